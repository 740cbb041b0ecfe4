"""Completing a job inside the worker's own transaction (River's ``JobCompleteTx``).

A worker that writes to the job's database can mark its job ``completed`` in the transaction
that holds its effect: both commit together or neither does, so a node dying between the
worker's commit and the node's ack never runs the effect twice.

    async def process(self, job):
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("INSERT INTO invoices ...")
            await complete_in(job, conn)

The row is written by the acker's own statement (``ack_jobs.sql``) with the columns of a
completion (``outcomes.complete``), guarded the same way: only while the row is still
``executing`` in this attempt. When the guard fails (the job was cancelled, rescued or already
completed), ``JobNotExecuting`` is raised inside the transaction, so the effect rolls back
too. The row lock taken here holds off a rescue or a cancel until the transaction ends; after
the commit, they find the job completed. The ack the node writes when ``process`` returns is
then a no-op (its guard no longer matches), whatever the worker returns or raises afterwards.
A job without a row (``perform_job``, inline testing) has nothing to complete: a no-op.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import pq

from oban_py.job.errors import JobNotExecuting
from oban_py.job.model import Job
from oban_py.node import outcomes
from oban_py.node.acker import batch_params
from oban_py.sql import Queries


def statement(
    job: Job, prefix: str | None = None, *, fallback: str | None = None
) -> tuple[bytes, dict[str, Any]] | None:
    """The completing statement of ``job``'s attempt and its parameters, for any driver: in
    ``prefix``, else the prefix of the node running the job, else ``fallback``. None for a job
    that has no row (run by ``perform_job`` or a testing client's inline mode): its attempt's
    own outcome is all there is to record."""
    if job.id is None:
        return None
    if job.attempted_at is None:
        raise JobNotExecuting(f"job {job.id} was never attempted: nothing to complete")
    prefix = prefix or job._prefix or fallback
    if prefix is None:
        raise ValueError(
            "complete_in needs the prefix of the node running the job: call it from the "
            "job's own attempt, or pass prefix="
        )
    ack = outcomes.complete(job, datetime.now(UTC))
    return Queries(prefix)["ack_jobs"], batch_params([ack])


def check(job: Job, rows: list[Any]) -> None:
    """Raise ``JobNotExecuting`` unless the statement completed the job."""
    if not rows:
        raise JobNotExecuting(
            f"job {job.id} is no longer executing in attempt {job.attempt} "
            "(cancelled, rescued or already completed): not completed"
        )


def _require_transaction(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    if conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        raise ValueError(
            "complete_in must run inside the transaction holding the job's effect: this "
            "connection is in autocommit with no transaction open (use conn.transaction())"
        )


async def complete_in(
    job: Job, conn: psycopg.AsyncConnection[Any], *, prefix: str | None = None
) -> None:
    """Complete ``job``'s running attempt in ``conn``'s open transaction (see module doc)."""
    if not isinstance(conn, psycopg.AsyncConnection):
        raise TypeError("complete_in takes an async psycopg connection; use complete_in_sync")
    _require_transaction(conn)
    found = statement(job, prefix)
    if found is not None:
        cur = await conn.execute(*found)
        check(job, await cur.fetchall())


def complete_in_sync(job: Job, conn: psycopg.Connection[Any], *, prefix: str | None = None) -> None:
    """``complete_in`` on a sync psycopg connection (a plain ``def process``)."""
    if not isinstance(conn, psycopg.Connection):
        raise TypeError("complete_in_sync takes a sync psycopg connection; use complete_in")
    _require_transaction(conn)
    found = statement(job, prefix)
    if found is not None:
        check(job, conn.execute(*found).fetchall())
