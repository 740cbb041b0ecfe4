"""Cluster-wide limits on one node (the multi-node proofs are in tests/faults/test_flow_cluster.py):
what counts against a global limit, how signals change it, how the CLI spells it."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nodekit import insert, wait_for
from structlog.testing import capture_logs

from oban_py import Oban
from oban_py.config import QueueConfig
from oban_py.job.model import Job
from oban_py.settings import SettingsError, parse_queues
from oban_py.worker import Worker

RUNNING: set[int] = set()
MOST = [0]


class Holds(Worker):
    name = "Py.Flow.Holds"

    async def process(self, job: Job) -> None:
        RUNNING.add(job.id)  # type: ignore[arg-type]
        MOST[0] = max(MOST[0], len(RUNNING))
        try:
            await asyncio.sleep(job.args.get("s", 0.3))
        finally:
            RUNNING.discard(job.id)  # type: ignore[arg-type]


def node(dsn: str, queues: Any) -> Oban:
    return Oban(dsn=dsn, peer=False, node="py-flow", queues=queues, poll_interval=0.05)


async def test_an_elixir_job_of_the_queue_neither_counts_nor_is_blocked(
    dsn: str, conn: Any
) -> None:
    # An Elixir producer's running job (its uuid beats in no table of ours) takes no capacity.
    elixir = await insert(conn, "Elixir.Worker", queue="q")
    await conn.execute(
        "UPDATE oban_jobs SET state = 'executing', attempt = 1, attempted_at = now(),"
        " attempted_by = ARRAY['elixir@host', %s] WHERE id = %s",
        (str(uuid.uuid4()), elixir),
    )
    MOST[0] = 0
    ids = [await insert(conn, Holds.name, {"s": 0.3}, queue="q") for _ in range(6)]
    async with node(dsn, {"q": {"limit": 10, "global_limit": 2}}):

        async def done() -> bool:
            cur = await conn.execute(
                "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND state = 'completed'",
                (ids,),
            )
            return (await cur.fetchone()) == (6,)

        await wait_for(done, 15)
    assert MOST[0] == 2


async def test_a_scale_signal_carrying_a_global_limit_changes_it(dsn: str, conn: Any) -> None:
    MOST[0] = 0
    async with node(dsn, {"q": 10}) as oban:
        oban._apply_signal({"action": "scale", "queue": "q", "global_limit": 1})
        assert oban.producers["q"].flow is not None
        ids = [await insert(conn, Holds.name, {"s": 0.2}, queue="q") for _ in range(3)]

        async def done() -> bool:
            cur = await conn.execute(
                "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND state = 'completed'",
                (ids,),
            )
            return (await cur.fetchone()) == (3,)

        await wait_for(done, 15)
    assert MOST[0] == 1


async def test_a_scale_signal_changes_only_the_limits_it_carries(dsn: str) -> None:
    # Oban Web sends one limit per scale ({"rate_limit": ...} alone): the other is kept, and
    # an explicit null removes the one it names.
    queues = {"q": {"limit": 10, "global_limit": 1, "rate_limit": {"allowed": 5, "period": 9}}}
    async with node(dsn, queues) as oban:
        producer = oban.producers["q"]
        rate = {"allowed": 1000, "period": 60}
        oban._apply_signal({"action": "scale", "queue": "q", "rate_limit": rate})
        assert producer.flow is not None
        assert producer.flow.global_limit is not None
        assert producer.flow.global_limit.allowed == 1
        assert producer.flow.rate_limit is not None
        assert producer.flow.rate_limit.allowed == 1000

        oban._apply_signal({"action": "scale", "queue": "q", "global_limit": {"allowed": 2}})
        assert producer.flow.global_limit.allowed == 2
        assert producer.flow.rate_limit.allowed == 1000

        oban._apply_signal({"action": "scale", "queue": "q", "limit": 4})
        assert (producer.limit, producer.flow.global_limit.allowed) == (4, 2)
        assert producer.flow.rate_limit.allowed == 1000

        oban._apply_signal({"action": "scale", "queue": "q", "global_limit": None})
        assert producer.flow is not None
        assert producer.flow.global_limit is None
        assert producer.flow.rate_limit.allowed == 1000

        oban._apply_signal({"action": "scale", "queue": "q", "rate_limit": None})
        assert producer.flow is None


async def test_a_scale_signal_with_a_bad_limit_changes_nothing(dsn: str) -> None:
    async with node(dsn, {"q": {"limit": 10, "global_limit": 1}}) as oban:
        producer = oban.producers["q"]
        before = producer.flow
        bad = {"allowed": 0, "period": 60}
        oban._on_signal({"action": "scale", "queue": "q", "limit": 3, "rate_limit": bad})
        assert (producer.limit, producer.flow) == (10, before)


def test_the_queues_option_spells_global_and_rate_limits_with_partitions() -> None:
    spec = parse_queues("mail:5:rate=100/60:rate_by=worker,exports:10:global=3:global_by=args.id")
    assert spec == {
        "mail": {
            "limit": 5,
            "rate_limit": {
                "allowed": 100,
                "period": 60.0,
                "partition": {"fields": ["worker"], "keys": []},
            },
        },
        "exports": {
            "limit": 10,
            "global_limit": {"allowed": 3, "partition": {"fields": ["args"], "keys": ["id"]}},
        },
    }
    for bad in ("q:5:global=x", "q:5:rate_by=worker", "q:5:burst=3", "q:5:global=2:global_by=id"):
        with pytest.raises(SettingsError):
            parse_queues(bad)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        # Oban Pro's keys name args keys: without "args" among the fields they would do nothing.
        ({"global_limit": {"allowed": 1, "partition": {"keys": ["acct"]}}}, 'add "args"'),
        (
            {
                "rate_limit": {
                    "allowed": 1,
                    "period": 1,
                    "partition": {"fields": ["worker"], "keys": ["acct"]},
                }
            },
            'add "args"',
        ),
        ({"global_limit": {"allowed": 1, "partition": {"fields": []}}}, "at least one"),
        ({"global_limit": {"allowed": 1, "partition": {"fields": ["args", "args"]}}}, "twice"),
        ({"global_limit": True}, "not a bool"),
        ({"global_limit": {"allowed": True}}, "not a bool"),
        ({"rate_limit": {"allowed": 5, "period": True}}, "not a bool"),
        ({"limit": True}, "not a bool"),
    ],
)
def test_a_limit_that_would_not_do_what_it_says_is_refused(spec: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        QueueConfig(**spec)


def test_partition_keys_with_args_among_the_fields_are_accepted() -> None:
    for fields in (["args"], ["worker", "args"]):
        partition = {"fields": fields, "keys": ["acct"]}
        spec = QueueConfig(global_limit={"allowed": 1, "partition": partition})
        assert spec.global_limit is not None
        assert spec.global_limit.partition is not None
        assert spec.global_limit.partition.keys == ["acct"]


async def test_oban_py_flow_shows_what_a_queue_uses_of_its_limits(dsn: str, conn: Any) -> None:
    from typer.testing import CliRunner

    from oban_py.cli import app

    # The node logs to stdout in this process (its sonar and stager settle in its first
    # second), where the CLI runner would take the lines for the command's output.
    with capture_logs():
        async with node(dsn, {"q": {"limit": 5, "rate_limit": {"allowed": 100, "period": 60}}}):
            ids = [await insert(conn, Holds.name, {"s": 2}, queue="q") for _ in range(3)]

            async def running() -> bool:
                cur = await conn.execute(
                    "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND state = 'executing'",
                    (ids,),
                )
                return (await cur.fetchone()) == (3,)

            await wait_for(running, 10)
            result = await asyncio.to_thread(
                CliRunner().invoke,
                app,
                ["flow", "q", "--period", "60", "--json", "--dsn", dsn],
            )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["executing"], figures["started"]) == (3, 3)


class Waits(Worker):
    """Runs until the test lets it end, so what the cluster uses stays put while it is read."""

    name = "Py.Flow.Waits"
    release: asyncio.Event

    async def process(self, job: Job) -> None:
        await Waits.release.wait()


#: Three per account at once, 100 starts a minute: the limits the readings below report.
PARTITIONED = {
    "limit": 10,
    "global_limit": {"allowed": 3, "partition": {"fields": ["args"], "keys": ["account_id"]}},
    "rate_limit": {"allowed": 100, "period": 60},
}


async def hold_per_account(conn: Any, counts: dict[Any, int]) -> list[int]:
    """Insert ``counts`` waiting jobs per account and wait until they all execute."""
    ids = [
        await insert(conn, Waits.name, {"account_id": account}, queue="q")
        for account, count in counts.items()
        for _ in range(count)
    ]

    async def running() -> bool:
        cur = await conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE id = ANY(%s) AND state = 'executing'", (ids,)
        )
        return (await cur.fetchone()) == (len(ids),)

    await wait_for(running, 10)
    return ids


async def test_oban_py_queues_shows_the_cluster_usage_of_each_limit_per_partition(
    dsn: str, conn: Any
) -> None:
    from typer.testing import CliRunner

    from oban_py.cli import app

    Waits.release = asyncio.Event()
    # The node logs to stdout in this process (its sonar and stager settle in its first
    # second), where the CLI runner would take the lines for the command's output.
    with capture_logs():
        async with node(dsn, {"q": PARTITIONED, "plain": 4}):
            await hold_per_account(conn, {7: 2, "acme": 1})
            listed = await asyncio.to_thread(
                CliRunner().invoke, app, ["queues", "--json", "--wait", "1.5", "--dsn", dsn]
            )
            table = await asyncio.to_thread(
                CliRunner().invoke, app, ["queues", "--wait", "1.5", "--dsn", dsn]
            )
            Waits.release.set()
    assert listed.exit_code == 0, listed.output
    checks = {c["queue"]: c for c in map(json.loads, listed.output.splitlines())}
    assert "flow_usage" not in checks["plain"], "a queue without cluster-wide limits reads nothing"
    assert checks["q"]["flow_usage"] == [
        {
            "limit": "global",
            "allowed": 3,
            "used": 3,
            "period": None,
            "partitions": {"account_id=7": 2, 'account_id="acme"': 1},
        },
        {"limit": "rate", "allowed": 100, "used": 3, "period": 60.0, "partitions": {"": 3}},
    ]
    assert table.exit_code == 0, table.output
    rows = [line.split() for line in table.output.splitlines()]
    assert ["q", "global", "account_id=7", "2", "3"] in rows
    assert ["q", "rate", "per", "60", "s", "(whole", "queue)", "3", "100"] in rows


async def test_a_node_reports_flow_usage_by_telemetry_only_while_someone_listens(
    dsn: str, conn: Any
) -> None:
    from oban_py import telemetry

    events: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    passes: list[Any] = []
    telemetry.attach("test-flow-passes", "oban.flow.stop", lambda e, m, d: passes.append(d))
    Waits.release = asyncio.Event()
    try:
        async with Oban(
            dsn=dsn, peer=False, queues={"q": PARTITIONED}, flow_usage_interval=0.05
        ) as oban:
            await hold_per_account(conn, {1: 3, 2: 1})
            seen = len(passes)
            await wait_for(lambda: len(passes) >= seen + 2, 5)
            # Nobody listened: the passes read nothing.
            assert {d["result"] for d in passes} == {0}
            telemetry.attach(
                "test-flow-usage",
                "oban.flow.usage",
                lambda e, m, d: events.append((e, dict(m), dict(d))),
            )
            await wait_for(lambda: bool(events), 5)
            Waits.release.set()
    finally:
        telemetry.detach("test-flow-passes")
        telemetry.detach("test-flow-usage")
    _, measurements, metadata = events[0]
    assert measurements == {"executing": 4, "started": 4}
    assert (metadata["queue"], metadata["node"], metadata["oban"]) == ("q", oban.config.node, oban)
    glob, rate = metadata["usage"]
    assert (glob.limit, glob.allowed, glob.partitions) == (
        "global",
        3,
        {"account_id=1": 3, "account_id=2": 1},
    )
    assert (rate.limit, rate.allowed, rate.period, rate.partitions) == ("rate", 100, 60.0, {"": 4})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(told=JSON)
def test_a_check_in_telling_limits_in_a_shape_of_its_own_tells_none(told: Any) -> None:
    # Check-ins arrive from any node on the channel: what cannot be read is no limit at all.
    from oban_py.flow import CHECK_KEY, Flow

    found = Flow.from_check({CHECK_KEY: told})
    assert found is None or (isinstance(found[0], Flow) and found[1] > 0)


@given(worker=st.none() | st.text(), args=st.dictionaries(st.text(), JSON, max_size=3))
def test_every_partition_key_reads_as_its_worker_and_args_keys(worker: Any, args: Any) -> None:
    from oban_py.flow.usage import label

    text = label(json.dumps([worker, args]))
    assert worker is None or text.startswith(f"worker={worker}")
    assert all(f"{key}=" in text for key in args)


def test_a_partition_value_reads_exactly_as_the_args_hold_it() -> None:
    from oban_py.flow.usage import label

    wide = '[null, {"id": 18446744073709551616, "name": "acme"}]'
    assert label(wide) == 'id=18446744073709551616,name="acme"'
    assert label('["Mailer", null]') == "worker=Mailer"
    assert label("") == ""
