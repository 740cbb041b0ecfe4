"""Check-ins published on gossip in the shape Oban Web reads."""

from __future__ import annotations

from oban_py.cluster.gossip import Gossip
from tests.cluster_helpers import Producer, Recorder, eventually, node

CHECK_KEYS = {
    "limit",
    "paused",
    "queue",
    "node",
    "name",
    "uuid",
    "running",
    "started_at",
    "updated_at",
    "refresh_interval",
}


async def test_each_node_publishes_the_checks_of_its_producers(dsn: str) -> None:
    async with Recorder(dsn) as recorder, node(dsn, node="py-1") as py:
        alpha = Producer("alpha", node="py-1", running=[7, 8], limit=5)
        py.producers = {"alpha": alpha, "beta": Producer("beta", node="py-1", paused=True)}
        assert await Gossip(py).run_once() == 2
        await eventually(lambda: bool(recorder.on("gossip")))
    ((message),) = recorder.on("gossip")
    assert message.keys() == {"checks"}
    first, second = message["checks"]
    assert first.keys() >= CHECK_KEYS
    assert second.keys() >= CHECK_KEYS
    assert (first["queue"], first["limit"], first["running"]) == ("alpha", 5, [7, 8])
    assert first["uuid"] == alpha.uuid  # what attempted_by[2] of its running jobs holds
    assert (second["queue"], second["paused"]) == ("beta", True)


async def test_a_node_without_producers_publishes_nothing(dsn: str) -> None:
    async with node(dsn, node="py-1") as py:
        assert await Gossip(py).run_once() == 0


def test_gossip_is_opt_out() -> None:
    from oban_py.cluster.duties import build
    from oban_py.config import Config

    class Holder:
        config = Config(gossip=False)
        pool = queries = notifier = None
        producers: dict[str, object] = {}
        is_leader = False

    kinds = [duty.kind for duty in build(Holder())]  # type: ignore[arg-type]
    assert "oban.gossip" not in kinds
    assert kinds[:2] == ["oban.sonar", "oban.stager"]
