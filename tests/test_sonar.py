"""Sonar: Elixir-shaped pings, and the isolated/solitary/clustered transitions."""

from __future__ import annotations

import json

from oban_py.cluster.sonar import FAST_POLL_INTERVAL, Sonar
from tests.cluster_helpers import Producer, Recorder, eventually, node
from tests.conftest import FIXTURES


def test_ping_shape_is_elixirs_and_has_no_time_key() -> None:
    fixture = json.loads((FIXTURES / "notifications" / "execution.json").read_text())
    pings = [n["decoded"] for n in fixture["notifications"] if n["channel"].endswith("_sonar")]
    assert pings
    assert all(p.keys() == {"node", "ping"} for p in pings)


async def test_pings_like_an_elixir_node(dsn: str) -> None:
    async with Recorder(dsn) as recorder, node(dsn, node="py-1") as py:
        await Sonar(py).run_once()
        await eventually(lambda: bool(recorder.on("sonar")))
    assert recorder.on("sonar") == [{"node": "py-1", "ping": True}]


async def test_status_is_known_as_soon_as_the_first_ping_returns(dsn: str) -> None:
    # As Elixir's Sonar, which updates its status on every ping it hears: a stager waiting on
    # an unknown status would otherwise wait a whole sonar_interval (15 s) to stage.
    async with node(dsn, node="py-1", sonar_interval=60) as py:
        sonar = Sonar(py)
        await sonar.run_once()
        await eventually(lambda: sonar.status == "solitary", within=2)


async def test_status_goes_solitary_then_clustered_then_back(dsn: str) -> None:
    async with node(dsn, node="py-1", sonar_interval=0.1) as a, node(dsn, node="py-2") as b:
        sonar = Sonar(a)
        assert sonar.status == "unknown"
        await sonar.run_once()
        await eventually(lambda: "py-1" in sonar.nodes)
        await sonar.run_once()
        assert sonar.status == "solitary"
        await Sonar(b).run_once()
        await eventually(lambda: sonar.status == "clustered")

        async def keeps_pinging_alone() -> bool:
            await sonar.run_once()
            return sonar.status == "solitary"

        # py-2 falls silent: forgotten after 8 intervals while our own pings keep arriving.
        await eventually(keeps_pinging_alone, within=3, step=0.1)


async def test_lost_notifications_isolate_the_node_and_speed_up_polling(dsn: str) -> None:
    async with node(dsn, node="py-1", sonar_interval=0.1, notifier="pg") as py:
        producer = Producer("q", poll_interval=5.0)
        py.producers = {"q": producer}
        sonar = Sonar(py)
        py.notifier.deaf = True  # LISTEN silently broken, as behind a transaction pooler
        await sonar.run_once()
        await sonar.run_once()
        assert sonar.status == "isolated"
        assert producer.poll_interval == FAST_POLL_INTERVAL
        assert producer.wakes == 1
        py.notifier.deaf = False
        await sonar.run_once()
        await eventually(lambda: sonar.status == "solitary")
        assert producer.poll_interval == 5.0
