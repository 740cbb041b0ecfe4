"""oban_py: PostgreSQL job processing for Python, sharing ``oban_jobs`` with Elixir Oban.

The names below are imported on first use (PEP 562), so ``import oban_py`` (and every
``oban-py`` command, ``--version`` first) does not pay for psycopg, pydantic and the runtime
before it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from oban_py import telemetry
    from oban_py.client.core import Client, get_instance
    from oban_py.config import Config
    from oban_py.job.errors import (
        DatabaseUnavailable,
        InstanceNotFound,
        InvalidArgs,
        ObanError,
        SchemaError,
        UnknownWorker,
    )
    from oban_py.job.model import Job
    from oban_py.job.returns import Cancel, Record, Snooze
    from oban_py.job.terms import Atom, RecordTooLarge
    from oban_py.job.unique import Unique
    from oban_py.node.instance import Oban
    from oban_py.worker import Worker, job, resolve, worker

#: Where each public name lives.
_HOMES = {
    "Atom": "oban_py.job.terms",
    "Cancel": "oban_py.job.returns",
    "Client": "oban_py.client.core",
    "Config": "oban_py.config",
    "DatabaseUnavailable": "oban_py.job.errors",
    "InstanceNotFound": "oban_py.job.errors",
    "InvalidArgs": "oban_py.job.errors",
    "Job": "oban_py.job.model",
    "Oban": "oban_py.node.instance",
    "ObanError": "oban_py.job.errors",
    "Record": "oban_py.job.returns",
    "RecordTooLarge": "oban_py.job.terms",
    "SchemaError": "oban_py.job.errors",
    "Snooze": "oban_py.job.returns",
    "Unique": "oban_py.job.unique",
    "UnknownWorker": "oban_py.job.errors",
    "Worker": "oban_py.worker",
    "get_instance": "oban_py.client.core",
    "job": "oban_py.worker",
    "resolve": "oban_py.worker",
    "worker": "oban_py.worker",
}

__all__ = [
    "Atom",
    "Cancel",
    "Client",
    "Config",
    "DatabaseUnavailable",
    "InstanceNotFound",
    "InvalidArgs",
    "Job",
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
    "get_instance",
    "job",
    "resolve",
    "telemetry",
    "worker",
]


def __getattr__(name: str) -> Any:
    if name == "telemetry":
        return importlib.import_module("oban_py.telemetry")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'oban_py' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
