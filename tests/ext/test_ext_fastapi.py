"""FastAPI: a real node lives with the app; jobs commit or roll back with the request."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from oban_py_ext.fastapi import Transaction, lifespan, transaction

from oban_py import Client, Job, Oban, Worker

DONE: list[str] = []
# scope="function": commit before the response is sent, so a 200 means the job is stored.
Tx = Annotated[Transaction, Depends(transaction("FastApiNode"), scope="function")]


class Welcome(Worker):
    name = "Py.Ext.FastAPI.Welcome"
    queue = "mailers"

    async def process(self, job: Job) -> None:
        DONE.append(job.args["email"])


def build_app(dsn: str) -> FastAPI:
    started: list[str] = []

    @asynccontextmanager
    async def own(app: Any) -> AsyncIterator[None]:
        started.append("app")
        yield

    app = FastAPI(
        lifespan=lifespan(
            lambda: Oban(dsn=dsn, queues={"mailers": 2}, peer=False, name="FastApiNode"),
            chain=own,
        )
    )
    app.state.started = started

    @app.post("/signup")
    async def signup(email: str, tx: Tx, fail: bool = False) -> dict[str, int | None]:
        await tx.conn.execute("INSERT INTO users (email) VALUES (%s)", (email,))
        job = await tx.enqueue(Welcome.new({"email": email}))
        if fail:
            raise HTTPException(status_code=409, detail="taken")
        return {"job": job.id}

    return app


def query(dsn: str, text: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(text.encode())
        return cur.fetchall() if cur.description else []


def test_lifespan_runs_a_node_that_works_jobs_enqueued_by_requests(dsn: str) -> None:
    query(dsn, "CREATE TABLE users (email text)")
    app = build_app(dsn)
    with TestClient(app) as http:
        assert app.state.started == ["app"]
        response = http.post("/signup", params={"email": "ada@example.com"})
        assert response.status_code == 200
        job_id = response.json()["job"]
        deadline = time.monotonic() + 10
        while query(dsn, f"SELECT state FROM oban_jobs WHERE id = {int(job_id)}") != [
            ("completed",)
        ]:
            assert time.monotonic() < deadline, "job not completed in time"
            time.sleep(0.02)
    assert "ada@example.com" in DONE
    assert query(dsn, "SELECT email FROM users") == [("ada@example.com",)]


def test_failed_request_leaves_neither_its_rows_nor_its_job(dsn: str) -> None:
    query(dsn, "CREATE TABLE users (email text)")
    with TestClient(build_app(dsn)) as http:
        response = http.post("/signup", params={"email": "bob@example.com", "fail": True})
        assert response.status_code == 409
    assert query(dsn, "SELECT count(*) FROM oban_jobs") == [(0,)]
    assert query(dsn, "SELECT count(*) FROM users") == [(0,)]


def test_lifespan_takes_an_insert_only_client_for_a_web_process(dsn: str) -> None:
    # Before: only an Oban node was accepted, so the web tier led and ran cron for no queue.
    app = FastAPI(lifespan=lifespan(lambda: Client(dsn=dsn, name="WebOnly")))

    @app.post("/enqueue")
    async def add(
        tx: Annotated[Transaction, Depends(transaction("WebOnly"), scope="function")],
    ) -> dict[str, Any]:
        job = await tx.enqueue(Welcome.new({"email": "web@example.com"}))
        return {"job": job.id, "state": job.state}

    with TestClient(app) as http:
        response = http.post("/enqueue")
        assert response.status_code == 200
        assert response.json()["state"] == "available"
    assert query(dsn, "SELECT worker, state FROM oban_jobs") == [
        (Welcome.__oban_name__, "available")
    ]
