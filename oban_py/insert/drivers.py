"""The drivers: run a planner's ``Work`` on an async or a sync psycopg connection.

Each is the same few lines over a different connection type: execute what the program yields,
send back the rows, return what it returns. A ``Work`` that needs one transaction gets one when
the connection is idle in autocommit (the driver's own transaction); otherwise it joins the
transaction the caller has open, and the program is told so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from contextlib import AsyncExitStack, ExitStack
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import set_json_loads

from oban_py import middleware
from oban_py.insert.planner import insert_plan
from oban_py.insert.statements import Copy, Program, Receive, Statement, Work
from oban_py.job import jsonb
from oban_py.job.model import Job
from oban_py.sql import Queries

T = TypeVar("T")

_IDLE = pq.TransactionStatus.IDLE


def _own(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    return conn.autocommit and conn.info.transaction_status == _IDLE


async def run_async(
    conn: psycopg.AsyncConnection[Any],
    work: Work[T],
    cursor: psycopg.AsyncCursor[Any] | None = None,
) -> T:
    """Run ``work`` on ``conn``, in a transaction of its own when it needs one and may.

    ``cursor``: a tuple cursor of ``conn`` that nothing else uses meanwhile, to run tuple
    statements on instead of a new one.
    """
    _refuse_pipeline(conn)
    one = work.one
    if one is not None:
        statement, finish = one
        cur = cursor if cursor is not None else conn.cursor(row_factory=tuple_row)
        return finish(await _rows_async(cur, statement))
    if work.transaction and _own(conn):
        async with conn.transaction():
            return await _drive_async(conn, work.program(True), cursor)
    return await _drive_async(conn, work.program(False), cursor)


async def _rows_async(cur: psycopg.AsyncCursor[Any], statement: Statement) -> list[Any]:
    """Execute ``statement`` on ``cur``; its rows (none for a statement that returns none)."""
    await cur.execute(statement.query, statement.params, prepare=statement.prepare)
    answer = cur.pgresult
    return await cur.fetchall() if answer is not None and answer.ntuples else []


def _rows_sync(cur: psycopg.Cursor[Any], statement: Statement) -> list[Any]:
    """``_rows_async`` for a sync cursor."""
    cur.execute(statement.query, statement.params, prepare=statement.prepare)
    answer = cur.pgresult
    return cur.fetchall() if answer is not None and answer.ntuples else []


async def _drive_async(
    conn: psycopg.AsyncConnection[Any],
    program: Program[T],
    tuples: psycopg.AsyncCursor[Any] | None,
) -> T:
    # Client-side cursors hold nothing on the server: left to the garbage collector, they
    # spare the awaited close that made up a tenth of a single enqueue.
    dicts: psycopg.AsyncCursor[Any] | None = None
    # Cursors of pipelined statements; None for a COPY, finished when the stack closes.
    pending: deque[psycopg.AsyncCursor[Any] | None] = deque()
    # Made only when a statement is pipelined: a single enqueue never pays for it.
    stack: AsyncExitStack | None = None
    rows: list[Any] | None = None
    try:
        while True:
            try:
                step = program.send(rows) if rows is not None else next(program)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, Receive):
                sent = pending.popleft()
                rows = [] if sent is None else await sent.fetchall()
                if not pending and stack is not None:
                    await stack.aclose()
                continue
            if isinstance(step, Copy):
                if pending:
                    raise RuntimeError("a COPY cannot share a pipeline")
                stack = stack or AsyncExitStack()
                # Sent now, the context left open: the server reads the rows while the program
                # goes on, and leaving it (at RECEIVE) waits for the server's answer.
                copy = await stack.enter_async_context(conn.cursor().copy(step.query))
                await copy.write(step.data)
                pending.append(None)
                rows = []
                continue
            if step.pipelined:
                if not pending:
                    stack = stack or AsyncExitStack()
                    await stack.enter_async_context(conn.pipeline())
                cur = conn.cursor(row_factory=tuple_row)
                await cur.execute(step.query, step.params, prepare=step.prepare)
                pending.append(cur)
                rows = []
                continue
            if step.dicts:
                if dicts is None:
                    dicts = conn.cursor(row_factory=dict_row)
                    # A caller's connection may decode JSON with the standard loads: be exact.
                    set_json_loads(jsonb.loads, dicts)
                cur = dicts
            else:
                if tuples is None:
                    tuples = conn.cursor(row_factory=tuple_row)
                cur = tuples
            rows = await _rows_async(cur, step)
    except BaseException as error:
        # The pipeline or COPY learns of the failure, as a ``with`` block would tell it.
        if stack is not None:
            pipeline, stack = stack, None
            try:
                await pipeline.__aexit__(type(error), error, error.__traceback__)
            finally:
                if _pipelined(conn):
                    await conn.close()
        raise
    finally:
        if stack is not None:
            await stack.aclose()


def run_sync(conn: psycopg.Connection[Any], work: Work[T]) -> T:
    """``run_async`` for a sync connection."""
    _refuse_pipeline(conn)
    one = work.one
    if one is not None:
        statement, finish = one
        return finish(_rows_sync(conn.cursor(row_factory=tuple_row), statement))
    if work.transaction and _own(conn):
        with conn.transaction():
            return _drive_sync(conn, work.program(True))
    return _drive_sync(conn, work.program(False))


def _drive_sync(conn: psycopg.Connection[Any], program: Program[T]) -> T:
    tuples: psycopg.Cursor[Any] | None = None
    dicts: psycopg.Cursor[Any] | None = None
    pending: deque[psycopg.Cursor[Any] | None] = deque()
    stack: ExitStack | None = None
    rows: list[Any] | None = None
    try:
        while True:
            try:
                step = program.send(rows) if rows is not None else next(program)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, Receive):
                sent = pending.popleft()
                rows = [] if sent is None else sent.fetchall()
                if not pending and stack is not None:
                    stack.close()
                continue
            if isinstance(step, Copy):
                if pending:
                    raise RuntimeError("a COPY cannot share a pipeline")
                stack = stack or ExitStack()
                stack.enter_context(conn.cursor().copy(step.query)).write(step.data)
                pending.append(None)
                rows = []
                continue
            if step.pipelined:
                if not pending:
                    stack = stack or ExitStack()
                    stack.enter_context(conn.pipeline())
                cur = conn.cursor(row_factory=tuple_row)
                cur.execute(step.query, step.params, prepare=step.prepare)
                pending.append(cur)
                rows = []
                continue
            if step.dicts:
                if dicts is None:
                    dicts = conn.cursor(row_factory=dict_row)
                    set_json_loads(jsonb.loads, dicts)
                cur = dicts
            else:
                if tuples is None:
                    tuples = conn.cursor(row_factory=tuple_row)
                cur = tuples
            rows = _rows_sync(cur, step)
    except BaseException as error:
        if stack is not None:
            pipeline, stack = stack, None
            try:
                pipeline.__exit__(type(error), error, error.__traceback__)
            finally:
                if _pipelined(conn):
                    conn.close()
        raise
    finally:
        if stack is not None:
            stack.close()


def _pipelined(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    # Still in pipeline mode after our pipeline's exit: that exit could not collect what was
    # in flight (a cancel landing inside the pipeline), and the connection would read other
    # statements' results from now on; no rollback (a pool's) leaves pipeline mode. Closed, a
    # pool discards it instead of lending it again.
    return conn.pgconn.pipeline_status != pq.PipelineStatus.OFF


def _refuse_pipeline(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    if _pipelined(conn):
        # A statement's rows come back only at the pipeline's next sync there, and the
        # program reads each statement's rows before it writes the next one.
        raise psycopg.ProgrammingError(
            "oban_py cannot insert on a connection in pipeline mode (inside conn.pipeline()):"
            " enqueue before or after the pipeline block"
        )


async def insert_async(
    conn: psycopg.AsyncConnection[Any], queries: Queries, jobs: Sequence[Job]
) -> list[Job]:
    """Insert ``jobs`` on an async connection (joining its transaction), in input order,
    through the process-wide insert middleware."""
    if not jobs:
        return []

    async def inner(batch: list[Job]) -> list[Job]:
        return await run_async(conn, insert_plan(queries, batch))

    return await middleware.insert_through(middleware.stack("insert"), list(jobs), inner)


def insert_sync(conn: psycopg.Connection[Any], queries: Queries, jobs: Sequence[Job]) -> list[Job]:
    """Insert ``jobs`` on a sync connection (joining its transaction), in input order.

    Kept for integrations written against it; new code calls ``Client.enqueue_many_sync``.
    """
    if not jobs:
        return []
    return middleware.insert_through_sync(
        middleware.stack("insert_sync"),
        list(jobs),
        lambda batch: run_sync(conn, insert_plan(queries, batch)),
    )
