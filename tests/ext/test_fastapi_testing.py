"""The FastAPI testing recipe of docs/testing.md, with Starlette's ``TestClient`` and with
``httpx.ASGITransport``: the ``oban_testing`` fixture serves the app's ``transaction()`` and
``Worker.enqueue``; inline jobs run after the request's commit, never after a rollback."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import psycopg
import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from oban_py_ext.fastapi import Transaction, transaction

from oban_py import Job, Worker
from oban_py.testing import TestingClient, assert_enqueued, drain_queue, refute_enqueued

seen: list[tuple[str, int]] = []
Tx = Annotated[Transaction, Depends(transaction(), scope="function")]


class Welcome(Worker):
    """Counts the user's row on a connection of its own: 1 only once the request committed."""

    name = "Recipe.Welcome"
    queue = "mailers"
    dsn = ""

    async def process(self, job: Job) -> None:
        async with await psycopg.AsyncConnection.connect(Welcome.dsn) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM users WHERE email = %s", (job.args["email"],)
            )
            row = await cur.fetchone()
        seen.append((job.args["email"], row[0] if row else -1))


app = FastAPI()


@app.post("/signup")
async def signup(email: str, tx: Tx, fail: bool = False) -> dict[str, Any]:
    await tx.conn.execute("INSERT INTO users (email) VALUES (%s)", (email,))
    job = await tx.enqueue(Welcome.new({"email": email}))
    if fail:
        raise HTTPException(status_code=409, detail="taken")
    return {"job": job.id, "state": job.state}


@pytest.fixture
def oban_dsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE users (email text)")
    Welcome.dsn = dsn
    seen.clear()
    return dsn


def stored(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT worker, args->>'email' FROM oban_jobs ORDER BY id").fetchall()
    return [(str(w), str(e)) for w, e in rows]


# -- TestClient (a sync test; each request runs in a loop of its own) ---------------------------


def test_testclient_manual_mode_stores_the_job_with_the_request(
    oban_testing: TestingClient, oban_dsn: str
) -> None:
    http = TestClient(app)
    assert http.post("/signup", params={"email": "ada@example.com"}).status_code == 200
    assert http.post("/signup", params={"email": "bob@example.com", "fail": "1"}).status_code == 409
    assert http.post("/signup", params={"email": "cy@example.com"}).status_code == 200
    assert stored(oban_dsn) == [
        ("Recipe.Welcome", "ada@example.com"),
        ("Recipe.Welcome", "cy@example.com"),
    ]
    assert seen == []


@pytest.mark.oban_testing("inline")
def test_testclient_inline_mode_runs_the_job_after_the_commit(
    oban_testing: TestingClient, oban_dsn: str
) -> None:
    with TestClient(app) as http:
        ok = http.post("/signup", params={"email": "ada@example.com"})
        failed = http.post("/signup", params={"email": "bob@example.com", "fail": "1"})
    assert (ok.status_code, ok.json()["state"]) == (200, "available")
    assert failed.status_code == 409
    # The worker saw the committed row; the rolled-back request's job never ran.
    assert seen == [("ada@example.com", 1)]
    assert stored(oban_dsn) == []


# -- httpx.ASGITransport (an async test; the app runs in the test's loop) ---------------------


async def test_asgi_transport_manual_mode_then_drain(
    oban_testing: TestingClient, oban_dsn: str
) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post("/signup", params={"email": "ada@example.com"})
        assert response.status_code == 200
        rolled_back = await http.post("/signup", params={"email": "bob@example.com", "fail": "1"})
        assert rolled_back.status_code == 409
    await assert_enqueued(worker=Welcome, args={"email": "ada@example.com"})
    await refute_enqueued(worker=Welcome, args={"email": "bob@example.com"})
    counts = await drain_queue(oban_testing, "mailers", scoped=True)
    assert counts["completed"] == 1
    assert seen == [("ada@example.com", 1)]


@pytest.mark.oban_testing("inline")
async def test_asgi_transport_inline_mode_runs_the_job_after_the_commit(
    oban_testing: TestingClient, oban_dsn: str
) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        await http.post("/signup", params={"email": "ada@example.com"})
        await http.post("/signup", params={"email": "bob@example.com", "fail": "1"})
    assert seen == [("ada@example.com", 1)]
    assert [j.state for j in oban_testing.performed] == ["completed"]
