"""``Runtime``: what a queue's producer takes from its node, and nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from oban_py.config import Config
from oban_py.job.progress import ProgressSink
from oban_py.middleware import Middleware
from oban_py.node.acker import Acker
from oban_py.node.threads import WorkerThreads
from oban_py.sql import Queries


@dataclass(frozen=True, slots=True)
class Runtime:
    """The node's settings, pool, statements, acker and worker threads, shared by its queues."""

    config: Config
    pool: AsyncConnectionPool[Any]
    queries: Queries
    acker: Acker
    threads: WorkerThreads
    #: where the jobs' ``progress`` reports go (None: kept on the job only)
    progress: ProgressSink | None = None
    #: the instance's middleware (``oban_py.middleware``), inside the process-wide ones
    middleware: tuple[Middleware, ...] = ()
