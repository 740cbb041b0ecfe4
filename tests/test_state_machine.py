"""Property: random sequences of the library's own statements never break the job state machine.

Each example runs a random program of insert, fetch, outcome (ack, possibly stale), cancel,
retry, stage, rescue and prune against the real database, through the same SQL files and ack
builders the runtime uses. After every step the table is compared with the snapshot before it:
each row may only move along a transition Elixir allows for that operation, and every row must
satisfy the invariants Elixir relies on (the table's CHECK constraints are enforced by the server
itself; a violation would raise and fail the example).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from oban_py.client.core import insert_sync
from oban_py.job.model import Job
from oban_py.node import outcomes as rules
from oban_py.node.outcomes import Ack
from oban_py.sql import Queries

Q = Queries("public")
QUEUES = ("alpha", "beta")
PRODUCERS = (("py-a", str(uuid.uuid4())), ("py-b", str(uuid.uuid4())))
FINAL = {"completed", "cancelled", "discarded"}
WAITING = {"available", "scheduled", "retryable"}

# What each operation may do to one existing row: (state before, state after).
ALLOWED: dict[str, set[tuple[str, str]]] = {
    "insert": set(),
    "fetch": {("available", "executing")},
    "ack": {
        ("executing", "completed"),
        ("executing", "retryable"),
        ("executing", "discarded"),
        ("executing", "scheduled"),
        ("executing", "cancelled"),
        ("cancelled", "cancelled"),
    },
    "cancel": {(s, "cancelled") for s in WAITING | {"executing"}},
    "retry": {(s, "available") for s in FINAL | {"scheduled", "retryable"}},
    "stage": {("scheduled", "available"), ("retryable", "available")},
    "rescue": {("executing", "available"), ("executing", "discarded")},
    "prune": set(),
}

inserts = st.tuples(
    st.just("insert"),
    st.integers(1, 4),
    st.sampled_from(QUEUES),
    st.integers(1, 3),
    st.booleans(),
)
fetches = st.tuples(
    st.just("fetch"), st.sampled_from(QUEUES), st.integers(1, 3), st.sampled_from(PRODUCERS)
)
outcomes = st.tuples(
    st.just("ack"),
    st.integers(0, 50),
    st.sampled_from(["complete", "fail", "snooze", "cancel", "record"]),
)
picks = st.tuples(st.sampled_from(["cancel", "retry"]), st.lists(st.integers(0, 50), max_size=3))
duties = st.tuples(st.sampled_from(["stage", "rescue", "prune"]))
programs = st.lists(st.one_of(inserts, fetches, outcomes, picks, duties), min_size=1, max_size=25)


def snapshot(conn: psycopg.Connection[Any]) -> dict[int, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM oban_jobs")
        return {r["id"]: r for r in cur.fetchall()}


def check_row(r: dict[str, Any]) -> None:
    state = r["state"]
    assert 0 <= r["attempt"] <= r["max_attempts"]
    if state in WAITING:
        # Otherwise the fetch guard would skip it forever: a job stuck without an error.
        assert r["attempt"] < r["max_attempts"], r
    if state == "executing":
        assert r["attempt"] >= 1, r
        assert r["attempted_at"] is not None, r
        assert len(r["attempted_by"] or []) == 2, r
    if state == "completed":
        assert r["completed_at"] is not None, r
    if state == "cancelled":
        assert r["cancelled_at"] is not None, r
    if state == "discarded":
        assert r["discarded_at"] is not None, r
    attempts = [e["attempt"] for e in r["errors"]]
    assert attempts == sorted(attempts), r
    assert all(a <= r["attempt"] for a in attempts), r
    if r["meta"].get("recorded"):
        # Written only with a completion; Elixir's retry keeps meta, so a completed job
        # retried since keeps its recorded result whatever its state now.
        assert state == "completed" or r["attempt"] >= 1, r
        assert isinstance(r["meta"].get("return"), str), r


def check_step(
    op: str, before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]]
) -> None:
    for job_id, old in before.items():
        new = after.get(job_id)
        if new is None:
            assert (op, old["state"] in FINAL) == ("prune", True), (op, old)
            continue
        if new["state"] != old["state"] or (op == "ack" and new != old):
            assert (old["state"], new["state"]) in ALLOWED[op], (op, old, new)
        if op == "fetch" and new["state"] != old["state"]:
            assert new["attempt"] == old["attempt"] + 1
        if op in ("stage", "rescue", "cancel") and new["state"] != old["state"]:
            assert new["attempt"] == old["attempt"], (op, old, new)
        # The errors list only ever grows, and only by an ack.
        assert new["errors"][: len(old["errors"])] == old["errors"], (op, old, new)
        if len(new["errors"]) > len(old["errors"]):
            assert op == "ack"
    for job_id, new in after.items():
        if job_id not in before:
            assert op == "insert", (op, new)
            assert new["state"] in ("available", "scheduled"), (op, new)
        check_row(new)


def ack_for(job: Job, kind: str) -> Ack:
    now = datetime.now(UTC)
    if kind == "complete":
        return rules.complete(job, now)
    if kind == "fail":
        return rules.failure(job, "** (RuntimeError) boom", now, 0.0)
    if kind == "snooze":
        return rules.snooze(job, 0, now)
    if kind == "cancel":
        return rules.cancel(job, "** (Oban.CancelError) nope", now)
    from oban_py.job.returns import Record

    return rules.record(job, Record({"ok": 1}), now)


def write_ack(conn: psycopg.Connection[Any], ack: Ack) -> None:
    params = {
        "ids": [ack.id],
        "attempted_at": [ack.attempted_at],
        "states": [ack.state],
        "at": [ack.at],
        "scheduled_in": [ack.scheduled_in],
        "extra_attempts": [ack.extra_attempts],
        "attempt_delta": [ack.attempt_delta],
        "errors": [ack.error],
        "metas": [ack.meta],
        "pkill": [ack.pkill],
    }
    conn.execute(Q["ack_jobs"], params)


def run(conn: psycopg.Connection[Any], step: tuple[Any, ...], fetched: list[Job]) -> None:
    op = step[0]
    ids = sorted(snapshot(conn))
    if op == "insert":
        _, count, queue, max_attempts, scheduled = step
        opts: dict[str, Any] = {"queue": queue, "max_attempts": max_attempts}
        if scheduled:
            opts["schedule_in"] = 0
        insert_sync(conn, Q, [Job(worker="Py.SM", **opts) for _ in range(count)])
    elif op == "fetch":
        _, queue, demand, (node, producer) = step
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                Q["fetch_jobs"], {"queue": queue, "demand": demand, "node": node, "uuid": producer}
            )
            fetched.extend(Job.from_row(r) for r in cur.fetchall())
    elif op == "ack":
        # Any job ever fetched, so stale acks (after a cancel, rescue or re-fetch) are tried too.
        if fetched:
            write_ack(conn, ack_for(fetched[step[1] % len(fetched)], step[2]))
    elif op in ("cancel", "retry") and ids:
        targets = [ids[i % len(ids)] for i in step[1]]
        if op == "cancel":
            conn.execute(Q["job_cancel"], {"ids": targets, "channel": "public.oban_signal"})
        else:
            conn.execute(Q["job_retry"], {"ids": targets})
    elif op == "stage":
        conn.execute(Q["stage_jobs"], {"limit": 5000})
    elif op == "rescue":
        # One producer died long ago: its jobs go back (fast rescue), then the time-based pass.
        conn.execute(
            Q["heartbeat_upsert"],
            {
                "node": PRODUCERS[0][0],
                "name": "Oban",
                "uuids": [PRODUCERS[0][1]],
                "queues": [QUEUES[0]],
                "started": [datetime(2020, 1, 1)],
            },
        )
        conn.execute(
            "UPDATE oban_py_heartbeats SET updated_at = '2020-01-01' WHERE uuid = %s",
            (PRODUCERS[0][1],),
        )
        conn.execute(Q["rescue_dead_producers"], {"ttl": 30, "live": [], "limit": 10_000})
        conn.execute(
            Q["rescue_stuck_jobs"], {"rescue_after": 0.0, "ttl": 30, "live": [], "limit": 10_000}
        )
    elif op == "prune":
        conn.execute(Q["prune_jobs"], {"max_age": 0.000001, "limit": 10_000})


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=programs)
def test_random_programs_never_reach_a_state_elixir_forbids(dsn: str, program: list[Any]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE oban_jobs, oban_py_heartbeats RESTART IDENTITY")
        fetched: list[Job] = []
        for step in program:
            before = snapshot(conn)
            run(conn, step, fetched)
            check_step(step[0], before, snapshot(conn))


def test_a_stale_ack_after_rescue_and_refetch_changes_nothing(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        fetched: list[Job] = []
        run(conn, ("insert", 1, QUEUES[0], 3, False), fetched)
        run(conn, ("fetch", QUEUES[0], 1, PRODUCERS[0]), fetched)
        run(conn, ("rescue",), fetched)
        run(conn, ("fetch", QUEUES[0], 1, PRODUCERS[1]), fetched)
        assert len(fetched) == 2
        before = snapshot(conn)
        write_ack(conn, ack_for(fetched[0], "complete"))
        assert snapshot(conn) == before
        write_ack(conn, ack_for(fetched[1], "complete"))
        [done] = snapshot(conn).values()
        assert done["state"] == "completed"
        assert done["attempt"] == 2


def test_errors_entries_written_by_acks_are_json_objects(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        fetched: list[Job] = []
        run(conn, ("insert", 1, QUEUES[1], 1, False), fetched)
        run(conn, ("fetch", QUEUES[1], 1, PRODUCERS[1]), fetched)
        write_ack(conn, ack_for(fetched[0], "fail"))
        [gone] = snapshot(conn).values()
        assert gone["state"] == "discarded"
        assert orjson.loads(orjson.dumps(gone["errors"]))[0]["attempt"] == 1
