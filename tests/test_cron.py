"""Cron expressions with Elixir's semantics, and one insert per slot across nodes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from oban_py import crontab as cron
from oban_py.cluster.cron import Cron, worker_defaults
from oban_py.crontab import CronEntry, Expression
from tests.cluster_helpers import Recorder, eventually, node
from tests.conftest import FIXTURES

SLOT = datetime(2026, 11, 23, 9, 19, tzinfo=UTC)  # a Monday


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "moment", "expected"),
    [
        ("* * * * *", "2026-11-23T09:19", True),
        ("*/5 * * * *", "2026-11-23T09:20", True),
        ("*/5 * * * *", "2026-11-23T09:19", False),
        ("10-20/5 * * * *", "2026-11-23T09:15", True),
        ("10/20 * * * *", "2026-11-23T09:50", True),
        ("1,19,40 9 * * *", "2026-11-23T09:19", True),
        ("0 9 * * MON-FRI", "2026-11-23T09:00", True),
        ("0 9 * * SAT,SUN", "2026-11-23T09:00", False),
        ("0 0 1 JAN *", "2027-01-01T00:00", True),
        ("@hourly", "2026-11-23T10:00", True),
        ("@daily", "2026-11-24T00:00", True),
        ("@midnight", "2026-11-24T00:01", False),
        ("@weekly", "2026-11-29T00:00", True),
        ("@monthly", "2026-12-01T00:00", True),
        ("@yearly", "2027-01-01T00:00", True),
        ("@annually", "2027-01-01T00:00", True),
        # Day of month AND weekday must both match (Elixir), not either (Vixie cron).
        ("0 0 13 * 5", "2026-11-13T00:00", True),
        ("0 0 13 * 5", "2026-10-13T00:00", False),
        ("0 0 13 * 5", "2026-10-16T00:00", False),
    ],
)
def test_expression_matches_like_elixir(expr: str, moment: str, expected: bool) -> None:
    assert Expression.parse(expr).matches(at(moment)) is expected


@pytest.mark.parametrize(
    "expr", ["* * * *", "* * * * * *", "60 * * * *", "* * * * 7", "*/0 * * * *", "5-1 * * * *"]
)
def test_expression_rejects_what_elixir_rejects(expr: str) -> None:
    with pytest.raises(ValueError):
        Expression.parse(expr)


def test_entry_name_is_stable_and_depends_on_expression_worker_and_options() -> None:
    a = CronEntry("* * * * *", "Interop.EchoWorker")
    assert a.name == CronEntry("* * * * *", "Interop.EchoWorker").name
    assert a.name.isdigit()
    assert int(a.name) < 2**27
    other = {
        CronEntry("*/2 * * * *", "Interop.EchoWorker").name,
        CronEntry("* * * * *", "Other").name,
        CronEntry("* * * * *", "Interop.EchoWorker", args={"n": 2}).name,
    }
    assert a.name not in other
    assert len(other) == 3


async def jobs(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    cur = await conn.execute("SELECT row_to_json(j) FROM oban_jobs j ORDER BY id")
    return [r[0] for r in await cur.fetchall()]


async def test_inserted_job_carries_elixirs_cron_meta(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    elixir = json.loads((FIXTURES / "jobs" / "cron_inserted.json").read_text())[1]
    entry = ("* * * * *", "Interop.EchoWorker", {"args": {"from": "cron", "n": 2}})
    async with Recorder(dsn) as recorder, node(dsn, crontab=[entry]) as py:
        ids = await Cron(py).evaluate(SLOT)
        await eventually(lambda: recorder.on("insert") == [{"queue": "default"}])
    (job,) = await jobs(conn)
    assert [job["id"]] == ids
    # The fixture row was completed afterwards; what cron wrote is the rest.
    assert job["state"] == "available"
    assert job["attempt"] == 0
    for key in ("queue", "worker", "args", "errors", "max_attempts", "priority", "tags"):
        assert job[key] == elixir[key], key
    assert job["inserted_at"] == job["scheduled_at"]
    # Elixir's keys, plus the slot (cron_at), which Elixir ignores.
    assert job["meta"].keys() == elixir["meta"].keys() | {"cron_at"}
    assert job["meta"].pop("cron_at") == "2026-11-23T09:19:00Z"
    assert job["meta"] | {"cron_name": None} == elixir["meta"] | {"cron_name": None}
    assert job["meta"]["cron_name"] == CronEntry(*entry[:2], **entry[2]).name


async def test_a_slot_is_inserted_once_by_three_nodes(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    tab = [("* * * * *", "A"), ("*/1 * * * *", "B")]
    async with (
        node(dsn, node="py-1", crontab=tab, notifier=False) as a,
        node(dsn, node="py-2", crontab=tab, notifier=False) as b,
        node(dsn, node="py-3", crontab=tab, notifier=False) as c,
    ):
        await asyncio.gather(*(Cron(n).evaluate(SLOT) for n in (a, b, c)))
    assert sorted(j["worker"] for j in await jobs(conn)) == ["A", "B"]


async def test_a_leader_change_within_the_minute_does_not_insert_the_slot_again(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    tab = [("* * * * *", "A")]
    async with (
        node(dsn, node="py-1", crontab=tab, notifier=False) as old,
        node(dsn, node="py-2", crontab=tab, notifier=False) as new,
    ):
        old.leader = True
        assert len(await Cron(old).evaluate(SLOT)) == 1
        old.leader, new.leader = False, True
        assert await Cron(new).evaluate(SLOT) == []
    assert len(await jobs(conn)) == 1


async def test_entry_timezone_overrides_the_global_one(dsn: str) -> None:
    tab = [
        {"expr": "0 9 * * *", "worker": "Local", "timezone": "America/Chicago"},
        {"expr": "0 9 * * *", "worker": "Global"},
    ]
    async with node(dsn, crontab=tab, timezone="Europe/Paris", notifier=False) as py:
        crond = Cron(py)
        # 15:00 UTC is 09:00 in Chicago (CST) and 16:00 in Paris.
        assert [e.worker for e in crond.due(at("2026-11-23T15:00"))] == ["Local"]
        assert [e.worker for e in crond.due(at("2026-11-23T08:00"))] == ["Global"]


async def test_reboot_entry_fires_once_per_leader_start(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    async with node(dsn, crontab=[("@reboot", "Boot")], notifier=False) as py:
        crond = Cron(py)
        assert len(await crond.evaluate(SLOT)) == 1
        assert crond.entries == []
    (job,) = await jobs(conn)
    assert job["meta"]["cron_expr"] == "@reboot"


async def test_only_the_leader_inserts_and_not_at_start(dsn: str) -> None:
    async with node(dsn, crontab=[("* * * * *", "A")], notifier=False) as py:
        py.leader = True
        crond = Cron(py)
        assert await crond.tick() == []  # the first pass only arms the minute timer
        py.leader = False
        assert await crond.tick() == []
        assert 0 < crond.next_delay() <= 60.01


def test_worker_decorator_registers_its_cron_entry() -> None:
    from oban_py.worker import worker

    @worker(queue="reports", cron={"expr": "0 * * * *", "timezone": "Europe/Paris"})
    class Hourly:
        def process(self, job: Any) -> None: ...

    (entry,) = [e for e in cron.crontab([]) if e.worker == Hourly.__oban_name__]
    assert (entry.expr, entry.timezone) == ("0 * * * *", "Europe/Paris")
    assert entry.job_options(worker_defaults(entry.worker))["queue"] == "reports"


def test_expressions_that_can_never_run_are_rejected_as_elixir_rejects_them() -> None:
    for never in ("0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 FEB *"):
        with pytest.raises(ValueError, match="can occur"):
            Expression.parse(never)
    # Some listed day exists in some listed month, or a field is unrestricted: accepted.
    for fine in ("0 0 29 2 *", "0 0 30,31 2,3 *", "0 0 31 * *", "0 0 * 2 *"):
        Expression.parse(fine)


async def test_a_slot_inserted_late_does_not_hide_the_next_slot(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    # Before: a 50 s insertion-time window; the 09:19 slot inserted late hid the 09:20 one.
    async with node(dsn, crontab=[("* * * * *", "A")], notifier=False) as py:
        crond = Cron(py)
        assert len(await crond.evaluate(SLOT)) == 1
        assert len(await crond.evaluate(at("2026-11-23T09:20"))) == 1
        assert await crond.evaluate(SLOT) == []
    assert [j["meta"]["cron_at"] for j in await jobs(conn)] == [
        "2026-11-23T09:19:00Z",
        "2026-11-23T09:20:00Z",
    ]


async def test_a_retried_or_finished_slot_is_still_taken(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    async with node(dsn, crontab=[("* * * * *", "A")], notifier=False) as py:
        crond = Cron(py)
        (job_id,) = await crond.evaluate(SLOT)
        for state in ("retryable", "completed", "discarded"):
            await conn.execute(
                b"UPDATE oban_jobs SET state = %s, attempt = 1 WHERE id = %s", (state, job_id)
            )
            assert await crond.evaluate(SLOT) == []
    assert len(await jobs(conn)) == 1


async def test_the_workers_unique_options_apply_to_its_cron_jobs(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    from oban_py.worker import worker

    @worker(queue="reports", unique={"period": "infinity", "states": "incomplete"})
    class Report:
        def process(self, job: Any) -> None: ...

    tab = [("* * * * *", Report.__oban_name__)]
    async with node(dsn, crontab=tab, notifier=False) as py:
        crond = Cron(py)
        assert len(await crond.evaluate(SLOT)) == 1
        # The 09:19 report has not run yet: the worker's unique options make 09:20 a duplicate.
        assert await crond.evaluate(at("2026-11-23T09:20")) == []
        await conn.execute(b"UPDATE oban_jobs SET state = 'completed'")
        assert len(await crond.evaluate(at("2026-11-23T09:21"))) == 1
    assert [j["queue"] for j in await jobs(conn)] == ["reports", "reports"]
