"""Helpers shared by the node runtime tests: inserting rows, waiting, comparing with fixtures."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from conftest import FIXTURES


def fixture_row(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((FIXTURES / "jobs" / name).read_text())
    return result


async def insert(
    conn: psycopg.AsyncConnection[Any],
    worker: str,
    args: dict[str, Any] | None = None,
    *,
    queue: str = "default",
    max_attempts: int = 20,
    attempt: int = 0,
) -> int:
    cur = await conn.execute(
        "INSERT INTO oban_jobs (queue, worker, args, max_attempts, attempt)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (queue, worker, json.dumps(args or {}), max_attempts, attempt),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def row(conn: psycopg.AsyncConnection[Any], job_id: int) -> dict[str, Any]:
    """The row as ``row_to_json`` gives it: the form of the fixtures."""
    cur = await conn.execute("SELECT row_to_json(j) FROM oban_jobs j WHERE id = %s", (job_id,))
    found = await cur.fetchone()
    assert found is not None
    result: dict[str, Any] = found[0]
    return result


async def wait_for(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10.0,  # noqa: ASYNC109
    step: float = 0.01,
) -> None:
    """Wait until ``check`` holds, polling every ``step`` s, failing after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


async def wait_state(
    conn: psycopg.AsyncConnection[Any],
    job_id: int,
    *states: str,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    async def reached() -> bool:
        return (await row(conn, job_id))["state"] in states

    await wait_for(reached, timeout)
    return await row(conn, job_id)


def assert_like_fixture(actual: dict[str, Any], name: str) -> None:
    """Same state, same columns set and null, same meta keys, same errors entry shape."""
    expected = fixture_row(name)
    assert set(actual) == set(expected)
    assert actual["state"] == expected["state"]
    for column, value in expected.items():
        assert (actual[column] is None) == (value is None), column
    assert set(actual["meta"]) == set(expected["meta"])
    assert len(actual["errors"]) == len(expected["errors"])
    for got, want in zip(actual["errors"], expected["errors"], strict=True):
        assert set(got) == set(want)
        assert got["at"].endswith("Z")
        assert len(got["at"]) == len(want["at"])
        assert isinstance(got["attempt"], int)
    assert len(actual["attempted_by"]) == 2
