"""The insert planner: jobs in, statements and parameters out, no connection in sight.

Plain jobs go in one ``INSERT`` per ``CHUNK_SIZE`` (a lone job takes the single-row form).
Unique jobs of a call are resolved in a number of statements that does not grow with their
number:

1. one statement takes the advisory locks of every unique job at once, in ascending key order;
2. one statement per *round* and *shape* looks every job up and inserts or replaces it.

A shape is one set of unique options (fields, keys, states, period, timestamp): its options
are statement parameters, so PostgreSQL plans the lookup for them (index on state and queue,
GIN on args), while each job's compared values are rows of one JSON document. A round holds at
most one job per lock key, so a later job sees what an earlier one of the same key did, as if
they had been inserted one by one. A job identical in its unique options, key and state to an
earlier one of the call, with no ``replace``, is that earlier job's duplicate without a
statement of its own. Round and shape counts depend on how varied the batch is, not on its size.

Why the locks cannot deadlock: in a transaction of the driver's own, every lock the transaction
will ever hold is requested in one statement, in one global order (ascending key), so no two
such transactions wait on each other in a cycle. In a caller's transaction, which may already
hold locks of its own (rows it updated, unique jobs it inserted earlier), waiting could close a
cycle, so there the locks are only *tried*, as Elixir's Basic engine does: a job whose lock
another transaction holds is returned with ``conflict=True`` and no id, and nothing is inserted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from oban_py.insert.copy_text import CopyBatch, copy_query, shape_key, text_array
from oban_py.insert.statements import RECEIVE, Copy, Program, Statement, Work, one_statement
from oban_py.job import jsonb
from oban_py.job.model import (
    JOB_DEFAULTS,
    Job,
    finish_stored,
    prepare_stored,
    schedule_delay,
    to_naive_utc,
)
from oban_py.job.unique import Unique, compared_value, lock_key
from oban_py.notifier import channel
from oban_py.sql import Queries

#: Jobs per plain INSERT statement; larger batches are split (one round trip per chunk).
CHUNK_SIZE = 5_000
#: Plain jobs from which a batch goes in by COPY instead (``_copy_plain``): measured faster from
#: 2,000 on, slower at 1,000 (wall per job, interleaved, loaded 2-core machine).
COPY_AT = 2_000


def insert_plan(queries: Queries, jobs: Sequence[Job]) -> Work[list[Job]]:
    """The work of inserting ``jobs``, results in input order (insert middleware runs around
    this, in the caller: ``oban_py.middleware``)."""
    if len(jobs) == 1 and jobs[0].unique is None:
        # The common single enqueue: one statement, nothing to order or overlap.
        job = jobs[0]
        statement = plain_statement(queries, [job], channel(queries.prefix, "insert"))
        return one_statement(statement, lambda rows: [job.stored(*rows[0][:3])])
    several = len(jobs) > 1 or jobs[0].unique is not None
    return Work(lambda own: _insert(queries, jobs, own), transaction=several)


def _insert(queries: Queries, jobs: Sequence[Job], own_transaction: bool) -> Program[list[Job]]:
    insert_channel = channel(queries.prefix, "insert")
    plain = [i for i, job in enumerate(jobs) if job.unique is None]
    if len(plain) == len(jobs) and len(jobs) > 1:
        # The usual batch: every job plain, the results in input order with nothing between.
        return (yield from _insert_plain(queries, jobs, insert_channel))
    results: list[Job | None] = [None] * len(jobs)
    if len(plain) == 1:
        # A lone plain job beside unique ones: one plain round trip, nothing to overlap.
        (i,) = plain
        rows = yield plain_statement(queries, [jobs[i]], insert_channel)
        results[i] = jobs[i].stored(rows[0][0], rows[0][1], rows[0][2])
    elif plain:
        stored = yield from _insert_plain(queries, [jobs[i] for i in plain], insert_channel)
        for i, job in zip(plain, stored, strict=True):
            results[i] = job
    if len(plain) < len(jobs):
        plan = unique_plan(queries.prefix, jobs)
        yield from _resolve(queries, jobs, plan, own_transaction, insert_channel, results)
    return [job for job in results if job is not None]


def _insert_plain(queries: Queries, jobs: Sequence[Job], insert_channel: str) -> Program[list[Job]]:
    """Insert plain ``jobs`` (more than one), ``CHUNK_SIZE`` a statement; the stored jobs in
    order. Every chunk is sent at once (pipeline mode); the returned jobs are built while the
    server inserts, and only their ids and timestamps wait for its rows."""
    if len(jobs) >= COPY_AT:
        copied = yield from _copy_plain(queries, jobs, insert_channel)
        if copied is not None:
            return copied
    chunks = [jobs[start : start + CHUNK_SIZE] for start in range(0, len(jobs), CHUNK_SIZE)]
    for chunk in chunks:
        yield replace(plain_statement(queries, chunk, insert_channel), pipelined=True)
    # psycopg collects every pending result on the first receive: build all first.
    prepared = prepare_stored(chunks)
    delays = [_delays(chunk) for chunk in chunks]
    stored: list[Job] = []
    for built, delayed in zip(prepared, delays, strict=True):
        rows = yield RECEIVE
        ids, now, inserted_ats = rows[0]
        finish_stored(built, ids, now, inserted_ats)
        _scheduled_by_server(built, delayed, now)
        stored += built
    return stored


def _copy_plain(
    queries: Queries, jobs: Sequence[Job], insert_channel: str
) -> Program[list[Job] | None]:
    """Insert plain ``jobs`` by COPY, the stored jobs in order; ``None`` (nothing done) when the
    table is not one COPY writes as the INSERT does (``sql/insert_copy_ids.sql``).

    The server spends a sixth to a quarter less per row than on the INSERT (no join, sort or
    RETURNING per row): with the ids reserved first (while the rows are written), the rows go
    as they are, and the returned jobs are built while the server reads them. Below
    ``COPY_AT`` jobs the extra round trip costs more than that saves."""
    reserve = {
        "table": sql.Identifier(queries.prefix, "oban_jobs").as_string(None),
        "count": len(jobs),
    }
    yield Statement(queries["insert_copy_ids"], reserve, pipelined=True)
    batch = CopyBatch(jobs)  # while the server reserves
    rows = yield RECEIVE
    ids, now = rows[0]
    if ids is None:
        return None
    columns, data = batch.rows(ids, now)
    yield Copy(copy_query(queries.prefix, columns), data)
    (built,) = prepare_stored([jobs])
    yield RECEIVE
    if queues := batch.queues():
        notify = {"channel": insert_channel, "queues": text_array(queues)}
        yield Statement(queries["insert_copy_notify"], notify)
    finish_stored(built, ids, now)
    if batch.delayed():
        _scheduled_by_server(built, _delays(jobs), now)
    return built


def _delays(jobs: Sequence[Job]) -> list[tuple[int, int]]:
    """The positions and delays of the jobs given ``schedule_in`` (few), whose ``scheduled_at``
    the statement takes from the server's clock."""
    return [(n, delay) for n, job in enumerate(jobs) if (delay := schedule_delay(job)) is not None]


def _scheduled_by_server(built: list[Job], delays: list[tuple[int, int]], now: datetime) -> None:
    for n, delay in delays:
        # What the statement wrote: the server's now plus the delay, exactly.
        built[n].scheduled_at = now.replace(tzinfo=UTC) + timedelta(microseconds=delay)


# -- plain jobs ---------------------------------------------------------------------------------


def row_params(job: Job, insert_channel: str) -> tuple[Any, ...]:
    """The parameters of ``sql/insert_job.sql``: the columns an insert writes, in its order,
    then the delay of a ``schedule_in`` job and the notification channel."""
    # Read from the fields as stored: an empty meta or tags a job shares stays shared.
    values = job.__dict__
    meta, tags, scheduled_at = values["meta"], values["tags"], values["scheduled_at"]
    delay = schedule_delay(job)
    if delay is not None:
        scheduled_at = None
    return (
        job.state,
        job.queue,
        job.worker,
        jsonb.dumps_str(job.args),
        jsonb.dumps_str(meta) if meta else "{}",
        text_array(tags) if tags else "{}",
        job.max_attempts,
        job.priority,
        None if scheduled_at is None else to_naive_utc(scheduled_at),
        delay,
        insert_channel,
    )


def _all_defaults(job: Job) -> bool:
    """Whether every column but queue, worker and args is its default, which the table has too:
    the server then parses three values instead of nine (a few percent of a single enqueue)."""
    values = job.__dict__
    return (
        values["state"] == "available"
        and values["scheduled_at"] is None
        and values["priority"] == JOB_DEFAULTS["priority"]
        and values["max_attempts"] == JOB_DEFAULTS["max_attempts"]
        and not values["meta"]
        and not values["tags"]
    )


def _row(job: Job) -> dict[str, Any]:
    delay = schedule_delay(job)
    if delay is not None:
        # Absent from every other row: jsonb_to_recordset reads a missing key as NULL.
        return {**_columns(job), "scheduled_at": None, "scheduled_in_us": delay}
    return _columns(job)


def _columns(job: Job) -> dict[str, Any]:
    values = job.__dict__
    return {
        "state": values["state"],
        "queue": values["queue"],
        "worker": values["worker"],
        "args": values["args"],
        "meta": values["meta"],
        "tags": values["tags"],
        "max_attempts": values["max_attempts"],
        "priority": values["priority"],
        "scheduled_at": to_naive_utc(values["scheduled_at"]),
    }


def plain_statement(queries: Queries, jobs: Sequence[Job], insert_channel: str) -> Statement:
    """The INSERT of plain jobs: the single-row form for one; for many, the args of all in one
    JSON array and the other columns once per shape (``sql/insert_jobs.sql``).

    orjson writes each document in one C call; per-column array literals built in Python
    cost four times as much, and psycopg dumping 5,000-element lists far more.
    """
    if len(jobs) == 1:
        job = jobs[0]
        if _all_defaults(job):
            params = (job.queue, job.worker, jsonb.dumps_str(job.args), insert_channel)
            return Statement(queries["insert_job_defaults"], params)
        return Statement(queries["insert_job"], row_params(job, insert_channel))
    shapes: dict[tuple[Any, ...], int] = {}
    kinds: list[int] = []
    args: list[dict[str, Any]] = []
    shape_rows: list[dict[str, Any]] = []
    for job in jobs:
        values = job.__dict__
        args.append(values["args"])
        key = shape_key(job, values)
        kind = shapes.get(key)
        if kind is None:
            kind = shapes[key] = len(shapes) + 1
            shape_rows.append(_shape(job))
        kinds.append(kind)
    batch: dict[str, str | None] = {
        "shapes": jsonb.dumps_str(shape_rows),
        "args": jsonb.dumps_str(args),
        # text: psycopg dumps a literal faster than a list of thousands of ints
        "kinds": None if len(shapes) == 1 else "{" + ",".join(map(str, kinds)) + "}",
        "channel": insert_channel,
    }
    return Statement(queries["insert_jobs"], batch)


def _shape(job: Job) -> dict[str, Any]:
    row = _row(job)
    del row["args"]
    return row


# -- unique jobs --------------------------------------------------------------------------------


@dataclass
class UniquePlan:
    """How the unique jobs of a call are resolved.

    ``keys``: the distinct lock keys, ascending (the lock order). ``rounds``: per round, the
    job indexes of each shape. ``followers``: job index → index of the earlier identical job
    whose result it shares.
    """

    key_of: dict[int, int] = field(default_factory=dict)
    keys: list[int] = field(default_factory=list)
    rounds: list[dict[Unique, list[int]]] = field(default_factory=list)
    followers: dict[int, int] = field(default_factory=dict)

    def statements(self) -> int:
        """Statements this plan sends: the lock, then one per shape of every round."""
        return (1 if self.keys else 0) + sum(len(shapes) for shapes in self.rounds)


def _values(job: Job) -> dict[str, Any]:
    return {"args": job.args, "meta": job.meta, "queue": job.queue, "worker": job.worker}


def _mergeable(job: Job, unique: Unique) -> bool:
    # The earlier job's result is this job's duplicate only when a lookup right after the
    # earlier insert would find it: its state is one of the unique states and its timestamp
    # falls inside the period.
    if job.replace is not None or job.state not in unique.states:
        return False
    return unique.timestamp == "inserted_at" or unique.period is None or job.scheduled_at is None


def unique_plan(prefix: str, jobs: Sequence[Job]) -> UniquePlan:
    """Lock keys, rounds and followers of the unique jobs among ``jobs``."""
    plan = UniquePlan()
    leaders: dict[tuple[int, Unique, str], int] = {}
    depth: dict[int, int] = defaultdict(int)
    for i, job in enumerate(jobs):
        unique = job.unique
        if unique is None:
            continue
        key = lock_key(prefix, unique, _values(job))
        plan.key_of[i] = key
        mergeable = _mergeable(job, unique)
        identity = (key, unique, job.state)
        if mergeable and identity in leaders:
            plan.followers[i] = leaders[identity]
            continue
        level = depth[key]
        depth[key] = level + 1
        if level == len(plan.rounds):
            plan.rounds.append({})
        plan.rounds[level].setdefault(unique, []).append(i)
        if mergeable:
            leaders.setdefault(identity, i)
    plan.keys = sorted(depth)
    return plan


def set_fields(job: Job) -> set[str]:
    """The replaceable fields this job sets: those not at Elixir's defaults."""
    values = job.__dict__
    fields = {name for name, default in JOB_DEFAULTS.items() if values[name] != default}
    return fields | {"worker"}


def _replace(job: Job) -> dict[str, list[str]]:
    if not job.replace:
        return {}
    given = set_fields(job)
    return {state: [f for f in fields if f in given] for state, fields in job.replace.items()}


def _unique_row(i: int, job: Job, unique: Unique) -> dict[str, Any]:
    row = _row(job)
    row["ord"] = i
    for name in ("args", "meta"):
        compared = compared_value(unique, _values(job), name)
        row[f"{name}_match"] = compared
        # Elixir: containment for selected keys, equality (both ways) otherwise or when empty.
        row[f"{name}_exact"] = not unique.keys or not compared
    row["replace"] = _replace(job)
    return row


def shape_statement(
    queries: Queries,
    jobs: Sequence[Job],
    indexes: Sequence[int],
    unique: Unique,
    channel_: str,
    results: Sequence[Job | None] = (),
) -> Statement:
    """Look up, then insert or replace, the jobs at ``indexes`` (all of one unique shape).

    ``results`` holds the plain jobs of the same call, inserted first: one listed after a unique
    job is no duplicate of it, as if the jobs were inserted one by one."""
    rows = [_unique_row(i, jobs[i], unique) for i in indexes]
    inserted = [
        (job.id, i)
        for i, job in enumerate(results)
        if job is not None and job.id and not job.conflict
    ]
    params: dict[str, Any] = {
        "call_ids": [job_id for job_id, _ in inserted],
        "call_ords": [i for _, i in inserted],
        "rows": jsonb.dumps_str(rows),
        "states": list(unique.states),
        "period": unique.period,
        "by_scheduled_at": unique.timestamp == "scheduled_at",
        "by_worker": "worker" in unique.fields,
        "by_queue": "queue" in unique.fields,
        "by_args": "args" in unique.fields,
        "by_meta": "meta" in unique.fields,
        "table": sql.Identifier(queries.prefix, "oban_jobs").as_string(None),
        "channel": channel_,
    }
    return Statement(queries["unique_insert"], params, dicts=True, prepare=False)


def lock_statement(queries: Queries, keys: Sequence[int], wait: bool) -> Statement:
    """Take (``wait``) or try the advisory locks of ``keys``, in the given (ascending) order."""
    name = "unique_lock_wait" if wait else "unique_lock_try"
    return Statement(queries[name], {"keys": list(keys)})


def _unlocked(job: Job) -> Job:
    # Elixir returns the changeset applied but not inserted, marked as a conflict.
    copy = job.model_copy(deep=True)
    copy.conflict = True
    return copy


def _resolve(
    queries: Queries,
    jobs: Sequence[Job],
    plan: UniquePlan,
    own_transaction: bool,
    insert_channel: str,
    results: list[Job | None],
) -> Program[None]:
    rows = yield lock_statement(queries, plan.keys, wait=own_transaction)
    refused: set[int] = set()
    if not own_transaction and rows:
        refused = set(rows[0][0] or ())
    for shapes in plan.rounds:
        for unique, indexes in shapes.items():
            todo = []
            for i in indexes:
                if plan.key_of[i] in refused:
                    results[i] = _unlocked(jobs[i])
                else:
                    todo.append(i)
            if not todo:
                continue
            found = yield shape_statement(queries, jobs, todo, unique, insert_channel, results)
            for row in found:
                job = Job.from_row(row)
                job.conflict = bool(row["conflict"])
                results[row["ord"]] = job
    for i, leader in plan.followers.items():
        shared = results[leader]
        assert shared is not None
        if shared.id is None:
            results[i] = _unlocked(jobs[i])
            continue
        copy = shared.model_copy(deep=True)
        copy.conflict = True
        results[i] = copy
