"""Property: whatever the workers do, the data holds and the database suffers, every claimed job
ends in exactly one outcome, none stays ``executing``, and no job ever runs twice at once.

Each example is a random program run on a real node: jobs whose worker (async or plain ``def``)
returns, snoozes, cancels, records, raises (``BaseException`` subclasses included, with error
texts holding NUL, lone surrogates, megabytes or no string at all), sleeps, blocks the event loop
or swallows its cancellation, under a work middleware that may return an outcome it built or
kept from another job; args with integers far wider than 64 bits, numbers beyond double range,
deep nesting and any unicode jsonb holds; and faults while they run: every connection of the
node terminated, a job cancelled while it runs (pkill), the node stopped mid-run and a new one
started. After the run settles: no row is ``available`` or ``executing``, every row is
completed, cancelled or discarded (by its attempt, never by the producer's safety net), the args
each run saw are exactly the args written, and the runs of any one job never overlap.

``OBAN_PROPERTY_EXAMPLES`` raises the number of examples; ``OBAN_PROPERTY_REPORT`` names a file
that receives the totals (examples, jobs, runs, and the stuck, lost and overlapping counts).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import structlog.testing
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from oban_py import Cancel, Client, Oban, Record, Snooze
from oban_py.config import LifelineConfig
from oban_py.job.model import Job
from oban_py.middleware import AttemptOutcome, Middleware, WorkNext
from oban_py.worker import Worker

EXAMPLES = int(os.environ.get("OBAN_PROPERTY_EXAMPLES", "30"))
QUEUE = "chaos"
FINAL = {"completed", "cancelled", "discarded"}


class Crash(BaseException):
    """A BaseException subclass a library might define."""


class BadStr(Exception):
    def __str__(self) -> str:
        raise SystemExit("a __str__ that raises")


@dataclass
class Ledger:
    """What the workers saw, shared with the test (the node runs in this process)."""

    plans: dict[int, dict[str, Any]] = field(default_factory=dict)
    expected_args: dict[int, Any] = field(default_factory=dict)
    runs: list[tuple[int, int, float, float]] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, job: Job, started: float) -> None:
        with self.lock:
            self.runs.append((job.id or 0, job.attempt, started, time.monotonic()))


LEDGER = Ledger()
TOTALS = {"examples": 0, "jobs": 0, "runs": 0, "stuck": 0, "lost": 0, "overlapping": 0}


def _error(plan: dict[str, Any]) -> BaseException:
    text = plan["text"]
    kind = plan["raise"]
    if kind == "BadStr":
        return BadStr()
    if kind == "NotStr":
        return RuntimeError(12345, object(), b"\x00\xff")
    return {
        "ValueError": ValueError,
        "SystemExit": SystemExit,
        "KeyboardInterrupt": KeyboardInterrupt,
        "GeneratorExit": GeneratorExit,
        "Crash": Crash,
        "CancelledError": asyncio.CancelledError,
    }[kind](text)


def _outcome(job: Job, plan: dict[str, Any]) -> Any:
    if job.args.get("wide") != LEDGER.expected_args[job.id or 0].get("wide"):
        LEDGER.mismatched.append(job.id or 0)
    do = plan["do"]
    if do == "raise":
        raise _error(plan)
    if do == "snooze" and job.attempt == 1:
        return Snooze(0)
    if do == "cancel":
        return Cancel(plan["text"])
    if do == "record":
        return Record({"seen": job.attempt})
    return None


class Meddles(Middleware):
    """A careless work middleware: by the job's plan, it returns an outcome it built by hand or
    the one of the job before, instead of the one ``call_next`` gave it."""

    def __init__(self) -> None:
        self.last: AttemptOutcome | None = None

    async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
        outcome = await call_next()
        kept, self.last = self.last, outcome
        meddle = LEDGER.plans[job.id or 0]["meddle"]
        if meddle == "hand-built":
            return AttemptOutcome("completed", None)
        if meddle == "another job's" and kept is not None:
            return kept
        return outcome


MEDDLES = Meddles()


class ChaosAsync(Worker):
    name = "Py.Chaos.Async"
    max_attempts = 3
    # The worker's own middleware: its failures take the worker's backoff (0), not Elixir's.
    middleware = [MEDDLES]

    def backoff(self, job: Job) -> float:
        return 0.0

    async def process(self, job: Job) -> Any:
        started = time.monotonic()
        plan = LEDGER.plans[job.id or 0]
        try:
            if plan["block"]:
                time.sleep(plan["block"])  # noqa: ASYNC251 - a worker blocking the loop
            if plan["stubborn"]:
                deadline = time.monotonic() + plan["sleep"]
                while time.monotonic() < deadline:
                    try:
                        await asyncio.sleep(0.01)
                    except asyncio.CancelledError:
                        continue
            else:
                await asyncio.sleep(plan["sleep"])
            return _outcome(job, plan)
        finally:
            LEDGER.record(job, started)


class ChaosSync(Worker):
    name = "Py.Chaos.Sync"
    max_attempts = 3
    # The worker's own middleware: its failures take the worker's backoff (0), not Elixir's.
    middleware = [MEDDLES]

    def backoff(self, job: Job) -> float:
        return 0.0

    def process(self, job: Job) -> Any:
        started = time.monotonic()
        plan = LEDGER.plans[job.id or 0]
        try:
            time.sleep(plan["sleep"] + plan["block"])
            return _outcome(job, plan)
        finally:
            LEDGER.record(job, started)


texts = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from("ab\x00\udcff\ud800é🎉"), max_size=20),
    st.builds(lambda n: "x" * n, st.integers(200_000, 1_200_000)),
)
plans = st.fixed_dictionaries(
    {
        "sync": st.booleans(),
        "do": st.sampled_from(["return", "raise", "snooze", "cancel", "record"]),
        "raise": st.sampled_from(
            [
                "ValueError",
                "SystemExit",
                "KeyboardInterrupt",
                "GeneratorExit",
                "Crash",
                "CancelledError",
                "BadStr",
                "NotStr",
            ]
        ),
        "text": texts,
        "sleep": st.sampled_from([0.0, 0.0, 0.01, 0.05, 0.3]),
        "block": st.sampled_from([0.0, 0.0, 0.0, 0.02]),
        "stubborn": st.booleans(),
        "meddle": st.sampled_from([None, None, None, "hand-built", "another job's"]),
    }
)
# What jsonb can hold: no NUL and no lone surrogate in strings; numbers of any size.
json_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
)
args_values = st.recursive(
    st.one_of(
        st.integers(-(2**200), 2**200), st.floats(allow_nan=False, allow_infinity=False), json_text
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=10,
)
jobs = st.tuples(plans, st.integers(-(2**300), 2**300), args_values, st.integers(0, 30))
faults = st.lists(
    st.tuples(st.sampled_from(["kill", "pkill", "restart"]), st.floats(0.0, 0.4)), max_size=2
)


def _args_json(wide: int, extra: Any, depth: int) -> str:
    nested: Any = "bottom"
    for _ in range(depth):
        nested = [nested]
    # Written as JSON text, so the numbers reach the table exactly as written (1.5e400 too).
    body = json.dumps({"wide": wide, "extra": extra, "deep": nested}, ensure_ascii=False)
    return body[:-1] + ', "huge": 1.5e400}'


def _node(dsn: str, name: str) -> Oban:
    return Oban(
        dsn=dsn,
        name="chaos",
        node=name,
        queues={QUEUE: 10},
        # The leader stages retries at once (a follower waits for sonar to call it solitary).
        peer=True,
        poll_interval=0.05,
        stage_interval=0.05,
        shutdown_grace=0.1,
        lifeline=LifelineConfig(heartbeat_interval=0.2),
    )


async def _fault(dsn: str, oban: Oban, kind: str, at: float, ids: list[int]) -> Oban:
    await asyncio.sleep(at)
    if kind == "kill":
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name <> 'chaos-test'"
            )
    elif kind == "pkill":
        running = [i for p in oban.producers.values() for i in p.running]
        if running:
            async with Client(dsn=dsn, name="chaos-client") as client:
                await client.cancel_job(running[0])
    elif kind == "restart":
        await oban.stop()
        oban = _node(dsn, "py-chaos-2")
        await oban.start()
    return oban


async def _run_example(dsn: str, specs: list[Any], fault_plan: list[Any]) -> None:
    LEDGER.plans.clear()
    LEDGER.expected_args.clear()
    LEDGER.runs.clear()
    LEDGER.mismatched.clear()
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, application_name="chaos-test"
    ) as conn:
        await conn.execute("TRUNCATE oban_jobs, oban_py_heartbeats RESTART IDENTITY")
        for plan, wide, extra, depth in specs:
            worker = ChaosSync if plan["sync"] else ChaosAsync
            cur = await conn.execute(
                "INSERT INTO oban_jobs (queue, worker, args, max_attempts) VALUES (%s, %s, %s, 3)"
                " RETURNING id",
                (QUEUE, worker.name, _args_json(wide, extra, depth)),
            )
            [job_id] = await cur.fetchone()  # type: ignore[misc]
            LEDGER.plans[job_id] = plan
            LEDGER.expected_args[job_id] = {"wide": wide}
        ids = list(LEDGER.plans)
        with structlog.testing.capture_logs() as logs:
            oban = _node(dsn, "py-chaos-1")
            await oban.start()
            try:
                for kind, at in fault_plan:
                    oban = await _fault(dsn, oban, kind, at, ids)
                deadline = time.monotonic() + 60
                while True:
                    cur = await conn.execute("SELECT id, state::text FROM oban_jobs")
                    states = dict(await cur.fetchall())
                    if set(states.values()) <= FINAL or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await oban.stop()
        # The producer's safety net writes an outcome too, but one that bypasses the worker's
        # retry policy and telemetry: every outcome must come from the attempt itself.
        outside = [e for e in logs if e["event"] == "attempt failed outside the worker"]
        del logs
        cur = await conn.execute("SELECT id, state::text FROM oban_jobs")
        states = dict(await cur.fetchall())
    stuck = [i for i, s in states.items() if s not in FINAL]
    lost = [i for i in ids if i not in states]
    overlapping = []
    by_job: dict[int, list[tuple[float, float]]] = {}
    for job_id, _, started, ended in LEDGER.runs:
        by_job.setdefault(job_id, []).append((started, ended))
    for job_id, spans in by_job.items():
        spans.sort()
        if any(b[0] < a[1] for a, b in itertools.pairwise(spans)):
            overlapping.append(job_id)
    TOTALS["examples"] += 1
    TOTALS["jobs"] += len(ids)
    TOTALS["runs"] += len(LEDGER.runs)
    TOTALS["stuck"] += len(stuck)
    TOTALS["lost"] += len(lost)
    TOTALS["overlapping"] += len(overlapping)
    report = os.environ.get("OBAN_PROPERTY_REPORT")
    if report:
        await asyncio.to_thread(Path(report).write_text, json.dumps(TOTALS))
    assert stuck == [], {i: (states[i], LEDGER.plans[i]["do"]) for i in stuck}
    assert outside == []
    assert lost == []
    assert overlapping == []
    assert LEDGER.mismatched == [], "args read back differently from how they were written"


@pytest.mark.timeout(600)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # Shrinking re-runs whole node runs for minutes; the failing example is printed as found.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(specs=st.lists(jobs, min_size=1, max_size=12), fault_plan=faults)
def test_every_claimed_job_ends_in_one_outcome_whatever_happens(
    dsn: str, specs: list[Any], fault_plan: list[Any]
) -> None:
    asyncio.run(_bounded(_run_example(dsn, specs, fault_plan)))


async def _bounded(example: Any) -> None:
    # A hang is a failure too: name what was still waiting, then fail the example.
    try:
        await asyncio.wait_for(example, 120)
    except TimeoutError:
        for task in asyncio.all_tasks():
            task.print_stack(limit=6)
        raise
