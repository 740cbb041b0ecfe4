"""Notification transport, checked against what Elixir Oban sent (compat_fixtures/notifications)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import FIXTURES

from oban_py import telemetry
from oban_py.config import Config
from oban_py.notifier import Notifier, channel, decode, encode, publish, publish_sync

NOTIFICATIONS = FIXTURES / "notifications"
CAPTURES = [
    p
    for p in sorted(NOTIFICATIONS.glob("*.json"))
    if p.name not in ("notify_encoder_output.json", "summary.json")
]


def captured() -> list[dict[str, Any]]:
    out = []
    for path in CAPTURES:
        out.extend(json.loads(path.read_text())["notifications"])
    return out


# -- encoding ------------------------------------------------------------------------------


def test_channel_is_prefix_dot_oban_name() -> None:
    assert channel("public", "insert") == "public.oban_insert"
    assert channel("private", "leader") == "private.oban_leader"
    channels = {n["channel"] for n in captured()}
    assert "private.oban_insert" in channels
    assert channels <= {
        channel(p, c)
        for p in ("public", "private")
        for c in ("insert", "signal", "leader", "sonar", "gossip", "my_app")
    }


def test_encode_is_byte_equal_to_elixirs_encoder_output() -> None:
    calls = json.loads((NOTIFICATIONS / "notify_encoder_output.json").read_text())
    received = json.loads((NOTIFICATIONS / "notify_encoding.json").read_text())["notifications"]
    for call in calls:
        for text in call["encoded"]:
            assert encode(decode(text)) == text  # type: ignore[arg-type]
    compressed = [n for n in received if n["compressed"]]
    assert compressed
    assert encode(compressed[0]["decoded"]) == compressed[0]["payload"]


def test_compressed_payload_has_erlangs_gzip_header() -> None:
    big = {"node": "n", "data": "x" * 600}
    text = encode(big)
    assert text.startswith("Z:")
    assert base64.b64decode(text[2:])[:10].hex() == "1f8b0800000000000003"
    assert decode(text) == big


def test_payload_of_exactly_512_bytes_stays_plain_json() -> None:
    payload = {"k": "x" * (512 - len('{"k":""}'))}
    assert len(encode(payload)) == 512
    assert encode(payload).startswith("{")
    payload["k"] += "x"
    assert encode(payload).startswith("Z:")


def test_every_captured_elixir_payload_reencodes_byte_equal() -> None:
    for note in captured():
        assert encode(note["decoded"]) == note["payload"], note


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_captured_payload_decodes_as_oban_decoded_it(path: Path) -> None:
    notes = json.loads(path.read_text())["notifications"]
    assert notes
    for note in notes:
        assert decode(note["payload"]) == note["decoded"], note
        assert note["compressed"] == note["payload"].startswith("Z:")


def test_legacy_bare_base64_gzip_decodes() -> None:
    legacy = base64.b64encode(gzip.compress(b'{"queue":"default"}', mtime=0)).decode()
    assert legacy.startswith("H4sI")
    assert decode(legacy) == {"queue": "default"}


# gzip's mtime=0: the values are the tests' ids, which every pytest-xdist worker must agree on.
@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "{",
        "Z:!!!notbase64",
        "Z:" + base64.b64encode(b"not gzip at all").decode(),
        "Z:" + base64.b64encode(gzip.compress(b"{not json", mtime=0))[:-8].decode(),
        "Z:" + base64.b64encode(gzip.compress(b"{not json", mtime=0)).decode(),
        "H4sIgarbage",
        "42",
        '"string"',
        "Z:" + base64.b64encode(gzip.compress(b"[" + b"0," * 600_000 + b"0]", mtime=0)).decode(),
    ],
)
def test_undecodable_text_gives_none(text: str) -> None:
    assert decode(text) is None


# -- on the server -------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def __call__(self, payload: dict[str, Any]) -> None:
        self.queue.put_nowait(payload)

    async def get(self) -> dict[str, Any]:
        async with asyncio.timeout(5):
            return await self.queue.get()

    async def nothing(self, wait: float = 0.3) -> None:
        await asyncio.sleep(wait)
        assert self.queue.empty(), self.queue.get_nowait()


@pytest.fixture
async def notifier(empty_dsn: str) -> AsyncIterator[Notifier]:
    n = Notifier(Config(dsn=empty_dsn, node="py-node"), empty_dsn)
    n.reconnect_min = 0.05
    yield n
    await n.stop()


async def raw_notify(dsn: str, full_channel: str, text: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT pg_notify(%s, %s)", [full_channel, text])


async def test_round_trip_small_and_compressed_payloads(notifier: Notifier) -> None:
    inbox = Inbox()
    notifier.listen("gossip", inbox)
    await notifier.start()
    await notifier.wait_listening()
    big = {"node": "n1", "queues": [{"queue": f"q{i}", "limit": 10} for i in range(40)]}
    assert encode(big).startswith("Z:")
    await notifier.notify("gossip", [{"small": True}, big])
    assert await inbox.get() == {"small": True}
    assert await inbox.get() == big


async def test_elixir_payloads_sent_raw_are_received_decoded(
    notifier: Notifier, empty_dsn: str
) -> None:
    inbox = Inbox()
    notifier.listen("gossip", inbox)
    await notifier.start()
    await notifier.wait_listening()
    received = json.loads((NOTIFICATIONS / "notify_encoding.json").read_text())["notifications"]
    for note in (n for n in received if n["channel"] == "public.oban_gossip"):
        await raw_notify(empty_dsn, note["channel"], note["payload"])
        assert await inbox.get() == note["decoded"]


async def test_ident_scopes_delivery_on_every_channel(notifier: Notifier, empty_dsn: str) -> None:
    inbox = Inbox()
    notifier.listen("signal", inbox)
    notifier.listen("my_app", inbox)
    await notifier.start()
    await notifier.wait_listening()
    for name in ("signal", "my_app"):
        await notifier.notify(
            name,
            [
                {"action": "pause", "ident": "Oban.elixir-node-1", "n": 1},
                {"action": "pause", "ident": "any", "n": 2},
                {"action": "pause", "ident": "Oban.py-node", "n": 3},
                {"action": "pause", "n": 4},
                {"action": "pause", "ident": "Other.py-node", "n": 5},
            ],
        )
        assert [(await inbox.get())["n"] for _ in range(3)] == [2, 3, 4]
    await inbox.nothing()


async def test_a_raising_callback_does_not_stop_dispatch(notifier: Notifier) -> None:
    inbox = Inbox()
    calls = 0

    def broken(payload: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("callback bug")

    notifier.listen("insert", broken)
    notifier.listen("insert", inbox)
    await notifier.start()
    await notifier.wait_listening()
    await notifier.notify("insert", [{"queue": "a"}])
    await notifier.notify("insert", [{"queue": "b"}])
    assert (await inbox.get())["queue"] == "a"
    assert (await inbox.get())["queue"] == "b"
    assert calls == 2
    assert notifier.connected


async def test_undecodable_payload_is_dropped_and_later_ones_arrive(
    notifier: Notifier, empty_dsn: str
) -> None:
    inbox = Inbox()
    notifier.listen("insert", inbox)
    await notifier.start()
    await notifier.wait_listening()
    full = channel("public", "insert")
    for garbage in ("Z:@@@", "H4sIAAAA", "{broken", "Z:" + base64.b64encode(b"xx").decode()):
        await raw_notify(empty_dsn, full, garbage)
    await raw_notify(empty_dsn, full, '{"queue":"after"}')
    assert await inbox.get() == {"queue": "after"}
    assert notifier.connected


async def test_channel_added_while_running_is_listened(notifier: Notifier) -> None:
    await notifier.start()
    inbox = Inbox()
    notifier.listen("leader", inbox)
    await notifier.wait_listening()
    await notifier.notify("leader", [{"down": "Oban"}])
    assert await inbox.get() == {"down": "Oban"}


async def test_terminated_listen_connection_reconnects_and_delivers_again(
    notifier: Notifier, empty_dsn: str
) -> None:
    inbox = Inbox()
    reconnected = asyncio.Event()
    events: list[str] = []
    notifier.listen("insert", inbox)
    notifier.on_reconnect(reconnected.set)
    telemetry.attach("test-notifier", "oban.notifier.*", lambda e, m, md: events.append(e))
    try:
        await notifier.start()
        await notifier.wait_listening()
        pid = notifier.backend_pid
        assert pid is not None
        async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        await asyncio.wait_for(reconnected.wait(), 10)
        await notifier.wait_listening()
        assert notifier.backend_pid not in (None, pid)
        await notifier.notify("insert", [{"queue": "again"}])
        assert await inbox.get() == {"queue": "again"}
        assert "oban.notifier.disconnect" in events
        assert "oban.notifier.reconnect" in events
    finally:
        telemetry.detach("test-notifier")


async def test_reports_disconnected_while_the_server_refuses(empty_dsn: str) -> None:
    refuse = False
    real = psycopg.AsyncConnection.connect

    async def connect() -> psycopg.AsyncConnection[Any]:
        if refuse:
            raise psycopg.OperationalError("refused for the test")
        return await real(empty_dsn, autocommit=True)

    n = Notifier(Config(dsn=empty_dsn, node="py-node"), connect)
    n.reconnect_min = 0.05
    reconnected = asyncio.Event()
    n.on_reconnect(reconnected.set)
    try:
        await n.start()
        assert n.connected
        refuse = True
        async with await real(empty_dsn, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", [n.backend_pid])
        for _ in range(100):
            if not n.connected:
                break
            await asyncio.sleep(0.02)
        assert not n.connected
        assert n.status == "reconnecting"
        await asyncio.sleep(0.3)  # several refused attempts
        assert not reconnected.is_set()
        refuse = False
        await asyncio.wait_for(reconnected.wait(), 10)
        assert n.connected
    finally:
        await n.stop()
    assert n.status == "stopped"


async def test_prefix_that_needs_quoting_works(empty_dsn: str) -> None:
    n = Notifier(Config(dsn=empty_dsn, node="py-node", prefix="My-Prefix"), empty_dsn)
    inbox = Inbox()
    n.listen("insert", inbox)
    try:
        await n.start()
        await n.wait_listening()
        await raw_notify(empty_dsn, "My-Prefix.oban_insert", '{"queue":"q"}')
        assert await inbox.get() == {"queue": "q"}
        await n.notify("insert", [{"queue": "r"}])
        assert await inbox.get() == {"queue": "r"}
    finally:
        await n.stop()


async def test_publish_joins_the_callers_transaction(notifier: Notifier, empty_dsn: str) -> None:
    inbox = Inbox()
    notifier.listen("insert", inbox)
    await notifier.start()
    await notifier.wait_listening()
    async with await psycopg.AsyncConnection.connect(empty_dsn) as conn:
        await publish(conn, "public", "insert", [{"queue": "rolled-back"}])
        await conn.rollback()
        await publish(conn, "public", "insert", [{"queue": "committed"}])
        await inbox.nothing(0.2)  # not before commit
        await conn.commit()
    assert await inbox.get() == {"queue": "committed"}
    await inbox.nothing()


async def test_publish_sync_sends_one_notify_per_payload(
    notifier: Notifier, empty_dsn: str
) -> None:
    inbox = Inbox()
    notifier.listen("my_app", inbox)
    await notifier.start()
    await notifier.wait_listening()

    def send() -> None:
        with psycopg.connect(empty_dsn) as conn:
            publish_sync(conn, "public", "my_app", [{"a": 1}, {"b": 2}])

    await asyncio.to_thread(send)
    assert [await inbox.get(), await inbox.get()] == [{"a": 1}, {"b": 2}]


async def test_oversized_payload_is_dropped_without_failing_the_transaction(
    notifier: Notifier, empty_dsn: str
) -> None:
    inbox = Inbox()
    notifier.listen("insert", inbox)
    await notifier.start()
    await notifier.wait_listening()
    incompressible = base64.b64encode(os.urandom(9000)).decode()
    async with await psycopg.AsyncConnection.connect(empty_dsn) as conn:
        await publish(conn, "public", "insert", [{"blob": incompressible}, {"queue": "ok"}])
        assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
    assert await inbox.get() == {"queue": "ok"}
    await inbox.nothing(0.2)


async def test_connect_may_be_a_dsn_provider_sync_or_async(empty_dsn: str) -> None:
    async def provide() -> str:
        return empty_dsn

    for source in (lambda: empty_dsn, provide):
        n = Notifier(Config(dsn=None, node="py-node"), source)
        inbox = Inbox()
        n.listen("insert", inbox)
        try:
            await n.start()
            await n.wait_listening()
            await n.notify("insert", [{"queue": "q"}])
            assert await inbox.get() == {"queue": "q"}
        finally:
            await n.stop()
