"""Leadership in oban_peers with Elixir's protocol, beside Elixir's own row."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import datetime, timedelta
from typing import Any

import psycopg

from oban_py.cluster.peer import Peer
from tests.cluster_helpers import Recorder, eventually, node
from tests.conftest import FIXTURES


def elixir_row(expires_in: float) -> dict[str, Any]:
    """The row Elixir's leader wrote (fixture), with its lease moved relative to now."""
    row = json.loads((FIXTURES / "peers.json").read_text())["rows"][0]
    started = datetime.fromisoformat(row["started_at"])
    assert datetime.fromisoformat(row["expires_at"]) - started == timedelta(seconds=30)
    return row | {"expires_in": expires_in}


async def insert_elixir_leader(conn: psycopg.AsyncConnection[Any], expires_in: float) -> None:
    row = elixir_row(expires_in)
    await conn.execute(
        "INSERT INTO oban_peers (name, node, started_at, expires_at) VALUES"
        " (%(name)s, %(node)s, timezone('UTC', now()),"
        "  timezone('UTC', now()) + make_interval(secs => %(expires_in)s))",
        row,
    )


async def peers(conn: psycopg.AsyncConnection[Any]) -> list[tuple[str, str]]:
    cur = await conn.execute("SELECT name, node FROM oban_peers ORDER BY name")
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def test_under_elixirs_name_stays_follower_until_elixirs_lease_expires(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    await insert_elixir_leader(conn, expires_in=0.5)
    async with node(dsn, node="py-1", peer_name="Oban", notifier=False) as py:
        peer = Peer(py)
        assert await peer.run_once() is False
        assert await peers(conn) == [("Oban", "elixir-node-1")]
        await asyncio.sleep(0.6)
        assert await peer.run_once() is True
        assert await peers(conn) == [("Oban", "py-1")]


async def test_under_default_name_leads_beside_elixirs_row_without_touching_it(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    await insert_elixir_leader(conn, expires_in=30)
    cur = await conn.execute("SELECT expires_at FROM oban_peers")
    (elixir_expiry,) = await cur.fetchone()  # type: ignore[misc]
    async with node(dsn, node="py-1", notifier=False) as py:
        peer = Peer(py)
        assert peer.name == "Oban.py"
        assert await peer.run_once() is True
        assert await peer.run_once() is True
        assert await peers(conn) == [("Oban", "elixir-node-1"), ("Oban.py", "py-1")]
        cur = await conn.execute("SELECT expires_at FROM oban_peers WHERE name = 'Oban'")
        assert await cur.fetchone() == (elixir_expiry,)


async def test_lease_is_the_interval_and_renewal_moves_only_expires_at(
    dsn: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    async with node(dsn, node="py-1", notifier=False) as py:
        peer = Peer(py)
        await peer.run_once()
        cur = await conn.execute("SELECT started_at, expires_at FROM oban_peers")
        started, expires = await cur.fetchone()  # type: ignore[misc]
        assert expires - started == timedelta(seconds=30)
        await asyncio.sleep(0.01)
        await peer.run_once()
        cur = await conn.execute("SELECT started_at, expires_at FROM oban_peers")
        started2, expires2 = await cur.fetchone()  # type: ignore[misc]
        assert started2 == started
        assert expires2 > expires
        # The leader renews at about half the lease, with decreasing jitter only.
        assert 13.5 <= peer.next_delay() <= 15


async def test_one_leader_among_several_python_peers(dsn: str) -> None:
    async with (
        node(dsn, node="py-1", notifier=False) as a,
        node(dsn, node="py-2", notifier=False) as b,
        node(dsn, node="py-3", notifier=False) as c,
    ):
        elected = await asyncio.gather(*(Peer(n).run_once() for n in (a, b, c)))
        assert sorted(elected) == [False, False, True]


async def test_stopped_leader_hands_over_at_once_with_a_down_message(dsn: str) -> None:
    async with (
        Recorder(dsn) as recorder,
        node(dsn, node="py-1") as a,
        node(dsn, node="py-2") as b,
    ):
        first, second = Peer(a), Peer(b)
        first.start()
        await eventually(lambda: first.is_leader)
        second.start()
        await eventually(lambda: second._listening)
        await b.notifier.wait_listening()
        assert not second.is_leader
        await first.stop()
        # Lease is 30 s: only the down message can make the follower lead this fast.
        await eventually(lambda: second.is_leader, within=3)
        await eventually(lambda: bool(recorder.on("leader")))
        assert recorder.on("leader") == [{"down": "Oban.py"}]
        await second.stop()


def test_down_message_has_the_shape_elixir_sends() -> None:
    fixture = json.loads((FIXTURES / "notifications" / "execution.json").read_text())
    downs = [n["decoded"] for n in fixture["notifications"] if n["channel"].endswith("oban_leader")]
    assert downs == [{"down": "Oban"}]


async def test_killed_leader_is_replaced_after_its_lease_expires(dsn: str) -> None:
    async with (
        node(dsn, node="py-1", peer_interval=1.0, notifier=False) as a,
        node(dsn, node="py-2", peer_interval=1.0, notifier=False) as b,
    ):
        doomed, heir = Peer(a), Peer(b)
        assert await doomed.run_once() is True
        # No clean-up at all: the row stays until expires_at.
        assert await heir.run_once() is False
        await asyncio.sleep(0.5)
        assert await heir.run_once() is False
        await asyncio.sleep(0.6)
        assert await heir.run_once() is True


async def test_an_election_that_errors_drops_leadership(dsn: str) -> None:
    async with node(dsn, node="py-1", notifier=False) as py:
        peer = Peer(py)
        assert await peer.run_once() is True
        async with py.pool.connection() as conn:
            await conn.execute("ALTER TABLE oban_peers RENAME TO oban_peers_gone")
        with contextlib.suppress(psycopg.Error):
            await peer.run_once()
        assert peer.is_leader is False
