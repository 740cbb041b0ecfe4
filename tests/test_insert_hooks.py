"""Insert hooks: every insert path passes each job through the registered hooks first."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from oban_py import Client, Job
from oban_py.client.core import insert_sync
from oban_py.hooks import add_insert_hook, remove_insert_hook
from oban_py.sql import Queries


def stamp(job: Job) -> Job:
    return job.model_copy(update={"meta": {**job.meta, "stamped": True}})


@pytest.fixture
def hooked() -> Iterator[None]:
    add_insert_hook("test.stamp", stamp)
    yield
    remove_insert_hook("test.stamp")


async def test_async_inserts_are_written_as_the_hook_returns_them(dsn: str, hooked: None) -> None:
    async with Client(dsn=dsn, name="HookClient") as client:
        one = await client.enqueue(Job(worker="Py.Hook", meta={"own": 1}))
        many = await client.enqueue_many([Job(worker="Py.Hook"), Job(worker="Py.Hook")])
    assert one.meta == {"own": 1, "stamped": True}
    assert [job.meta for job in many] == [{"stamped": True}, {"stamped": True}]


def test_sync_inserts_run_the_hooks_too(dsn: str, hooked: None) -> None:
    with psycopg.connect(dsn) as conn:
        [job] = insert_sync(conn, Queries("public"), [Job(worker="Py.Hook")])
    assert job.meta == {"stamped": True}


async def test_removed_hook_no_longer_runs(dsn: str) -> None:
    add_insert_hook("test.stamp", stamp)
    assert remove_insert_hook("test.stamp") is True
    assert remove_insert_hook("test.stamp") is False
    async with Client(dsn=dsn, name="HookClient") as client:
        job = await client.enqueue(Job(worker="Py.Hook"))
    assert job.meta == {}
