"""Queue settings stored for the cluster (``--persist``): they survive a node's restart and reach
a node started later, and a change without ``--persist`` is gone after a restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nodekit import wait_for
from typer.testing import CliRunner

from oban_py import Client, Oban
from oban_py.cli import app


def node(dsn: str, name: str) -> Oban:
    return Oban(dsn=dsn, peer=False, node=name, queues={"q": 2}, poll_interval=0.1)


def cli(dsn: str, *args: str) -> None:
    result = CliRunner().invoke(app, [*args, "--dsn", dsn])
    assert result.exit_code == 0, result.output


async def acli(dsn: str, *args: str) -> None:
    # The CLI runs its own event loop, as from a shell: off this test's loop.
    await asyncio.to_thread(cli, dsn, *args)


async def test_a_persisted_limit_and_pause_survive_a_restart_and_reach_a_later_node(
    dsn: str,
) -> None:
    first = node(dsn, "py-first")
    await first.start()
    try:
        await acli(dsn, "scale", "q", "--limit", "7", "--persist")
        await acli(dsn, "pause", "q", "--persist")
        await wait_for(lambda: first.producers["q"].limit == 7 and first.producers["q"].paused)
    finally:
        await first.stop()
    for name in ("py-first", "py-later"):
        async with node(dsn, name) as started:
            producer = started.producers["q"]
            assert (producer.limit, producer.paused) == (7, True), name
    await acli(dsn, "resume", "q", "--persist")
    async with node(dsn, "py-third") as third:
        assert (third.producers["q"].limit, third.producers["q"].paused) == (7, False)


async def test_a_change_without_persist_is_gone_after_a_restart(dsn: str) -> None:
    async with node(dsn, "py-one") as one:
        await acli(dsn, "scale", "q", "--limit", "5")
        await wait_for(lambda: one.producers["q"].limit == 5)
    async with node(dsn, "py-one") as again:
        assert again.producers["q"].limit == 2


def test_bad_settings_are_refused_before_anything_is_stored(dsn: str) -> None:
    client = Client(dsn=dsn)
    try:
        for bad in ({"limit": 0}, {"burst": 3}, {"global_limit": {"allowed": -1}}):
            with pytest.raises(ValueError):
                client.persist_queue_sync("q", **bad)
    finally:
        client.close_sync()
    result: Any = CliRunner().invoke(app, ["pause", "*", "--persist", "--dsn", dsn])
    assert result.exit_code != 0
