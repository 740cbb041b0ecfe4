"""FastAPI / Starlette: run a node (or an insert-only client) with the app, enqueue inside the
request's transaction.

    oban = Oban(dsn=DSN, queues={"mailers": 10})   # or Client(dsn=DSN): the web tier only inserts
    app = FastAPI(lifespan=lifespan(oban))

    @app.post("/signup")
    async def signup(tx: Annotated[Transaction, Depends(transaction())]) -> dict[str, int]:
        await tx.conn.execute("INSERT INTO users ...")
        job = await tx.enqueue(Mailer.new({"email": "a@example.com"}))
        return {"job": job.id}

``transaction()`` opens one connection from the client's pool and one transaction for the
request: the app's own SQL and the job commit together when the endpoint returns, and roll back
together when it raises (an ``HTTPException`` included), so a failed request never leaves a job
behind. Only Starlette is needed for ``lifespan``; ``transaction`` needs FastAPI's ``Depends``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from oban_py import Client, Job, Oban, get_instance


def lifespan(
    oban: Client | Callable[[], Client],
    chain: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A ``lifespan=`` for FastAPI/Starlette that starts ``oban`` with the app and stops it after.

    ``oban`` is a node (``Oban``: started, so it runs queues, may lead and insert cron jobs) or
    an insert-only ``Client`` (its pool opened and closed: the web process only enqueues, and
    ``oban-py start`` elsewhere works the jobs). It may be a factory, called at startup (so it
    is built inside the server's event loop). ``chain`` is the app's own lifespan, entered
    inside this one.
    """

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        client = oban if isinstance(oban, Client) else oban()
        if isinstance(client, Oban):
            await client.start()
        else:
            await client.open()
        try:
            if chain is None:
                yield
            else:
                async with chain(app):
                    yield
        finally:
            if isinstance(client, Oban):
                await client.stop()
            else:
                await client.close()

    return run


@dataclass
class Transaction:
    """The request's connection, inside its transaction, and enqueueing on it."""

    client: Client
    conn: psycopg.AsyncConnection[Any]

    async def enqueue(self, job: Job) -> Job:
        """Insert ``job`` in the request's transaction."""
        return await self.client.enqueue(job, conn=self.conn)

    async def enqueue_many(self, jobs: Iterable[Job]) -> list[Job]:
        """Insert ``jobs`` in the request's transaction."""
        return await self.client.enqueue_many(jobs, conn=self.conn)


def transaction(
    name: str = "Oban",
) -> Callable[[], AsyncIterator[Transaction]]:
    """A dependency yielding a ``Transaction`` on the pool of the client named ``name``.

    Commits when the endpoint returns, rolls back when it raises.
    """

    async def dependency() -> AsyncIterator[Transaction]:
        client = get_instance(name)
        await client.open()
        async with client.pool.connection() as conn, conn.transaction():
            yield Transaction(client, conn)

    return dependency
