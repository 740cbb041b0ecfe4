"""oban_py: PostgreSQL job processing for Python, sharing ``oban_jobs`` with Elixir Oban."""

from __future__ import annotations

from oban_py import telemetry
from oban_py.client.core import Client, get_instance
from oban_py.config import Config
from oban_py.job.errors import (
    DatabaseUnavailable,
    InstanceNotFound,
    InvalidArgs,
    JobNotExecuting,
    ObanError,
    SchemaError,
    UnknownWorker,
)
from oban_py.job.model import Job
from oban_py.job.returns import Cancel, Record, Snooze
from oban_py.job.terms import Atom, RecordTooLarge
from oban_py.job.unique import Unique
from oban_py.node.complete import complete_in, complete_in_sync
from oban_py.node.instance import Oban
from oban_py.worker import Worker, job, resolve, worker

__version__ = "0.1.0"

__all__ = [
    "Atom",
    "Cancel",
    "Client",
    "Config",
    "DatabaseUnavailable",
    "InstanceNotFound",
    "InvalidArgs",
    "Job",
    "JobNotExecuting",
    "Oban",
    "ObanError",
    "Record",
    "RecordTooLarge",
    "SchemaError",
    "Snooze",
    "Unique",
    "UnknownWorker",
    "Worker",
    "__version__",
    "complete_in",
    "complete_in_sync",
    "get_instance",
    "job",
    "resolve",
    "telemetry",
    "worker",
]
