"""oban_py: PostgreSQL job processing for Python, sharing ``oban_jobs`` with Elixir Oban.

The names below are imported on first use (PEP 562), so ``import oban_py`` (and every
``oban-py`` command, ``--version`` first) does not pay for psycopg, pydantic and the runtime
before it needs them.
"""

from __future__ import annotations

import importlib
import sys
import types
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
    from oban_py.results import (
        JobCancelled,
        JobDiscarded,
        JobFailed,
        JobNotFound,
        Progress,
        Results,
        StopReason,
        WaitStopped,
        WaitTimeout,
        wait_for_sync,
    )
    from oban_py.worker import FunctionWorker, Worker, job, resolve, worker
    from oban_py.workflows import Workflow, WorkflowError

#: Where each public name lives.
_HOMES = {
    "Atom": "oban_py.job.terms",
    "Cancel": "oban_py.job.returns",
    "Client": "oban_py.client.core",
    "complete_in": "oban_py.node.complete",
    "complete_in_sync": "oban_py.node.complete",
    "Config": "oban_py.config",
    "DatabaseUnavailable": "oban_py.job.errors",
    "get_instance": "oban_py.client.core",
    "InstanceNotFound": "oban_py.job.errors",
    "InvalidArgs": "oban_py.job.errors",
    "Job": "oban_py.job.model",
    "job": "oban_py.worker",
    "JobCancelled": "oban_py.results",
    "JobDiscarded": "oban_py.results",
    "JobFailed": "oban_py.results",
    "JobNotExecuting": "oban_py.job.errors",
    "JobNotFound": "oban_py.results",
    "Oban": "oban_py.node.instance",
    "ObanError": "oban_py.job.errors",
    "Progress": "oban_py.results",
    "Record": "oban_py.job.returns",
    "RecordTooLarge": "oban_py.job.terms",
    "resolve": "oban_py.worker",
    "Results": "oban_py.results",
    "SchemaError": "oban_py.job.errors",
    "Snooze": "oban_py.job.returns",
    "StopReason": "oban_py.results",
    "Unique": "oban_py.job.unique",
    "UnknownWorker": "oban_py.job.errors",
    "wait_for_sync": "oban_py.results",
    "WaitStopped": "oban_py.results",
    "WaitTimeout": "oban_py.results",
    "Worker": "oban_py.worker",
    "FunctionWorker": "oban_py.worker",
    "Workflow": "oban_py.workflows",
    "WorkflowError": "oban_py.workflows",
    "worker": "oban_py.worker",
}

__all__ = [
    "Atom",
    "Cancel",
    "Client",
    "Config",
    "DatabaseUnavailable",
    "FunctionWorker",
    "InstanceNotFound",
    "InvalidArgs",
    "Job",
    "JobCancelled",
    "JobDiscarded",
    "JobFailed",
    "JobNotExecuting",
    "JobNotFound",
    "Oban",
    "ObanError",
    "Progress",
    "Record",
    "RecordTooLarge",
    "Results",
    "SchemaError",
    "Snooze",
    "StopReason",
    "Unique",
    "UnknownWorker",
    "WaitStopped",
    "WaitTimeout",
    "Worker",
    "Workflow",
    "WorkflowError",
    "__version__",
    "complete_in",
    "complete_in_sync",
    "get_instance",
    "job",
    "resolve",
    "telemetry",
    "wait_for_sync",
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


class _Package(types.ModuleType):
    """``oban_py.worker`` and ``oban_py.job`` are the decorators, though submodules share the
    names: importing a submodule sets the package's attribute of its name, which would replace
    the decorator with the module. These two names ignore that and stay the decorators."""

    @property
    def worker(self) -> Any:
        return importlib.import_module("oban_py.worker").worker

    @worker.setter
    def worker(self, value: Any) -> None:  # the submodule, set by the import system
        pass

    @property
    def job(self) -> Any:
        return importlib.import_module("oban_py.worker").job

    @job.setter
    def job(self, value: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package
