"""Drive ``oban`` 0.7.0 (PyPI) through our drain and bulk scenarios; run by the peer's own
interpreter (``/tmp/peer-oban/bin/python bench/peer_oban.py '<json>'``), so it imports nothing of
ours. Prints one JSON line of figures, measured as ours are (rates from the database)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from oban import Oban, schema, worker
from psycopg_pool import AsyncConnectionPool

SEEN: list[int] = []
DONE = asyncio.Event()
TARGET = 0


@worker(queue="bench")
class Noop:
    async def process(self, job: Any) -> None:
        SEEN.append(job.id)
        if len(SEEN) >= TARGET:
            DONE.set()


#: The peer's decorator gives the class its ``new``; its package is untyped to mypy here.
NOOP: Any = Noop


async def main(opts: dict[str, Any]) -> dict[str, Any]:
    global TARGET
    pool = AsyncConnectionPool(opts["dsn"], min_size=1, max_size=20, open=False)
    await pool.open()
    out: dict[str, Any] = {}
    try:
        await schema.install(pool)
        async with pool.connection() as conn:
            await conn.execute("SET client_min_messages = warning")
        async with Oban(pool=pool, name="Peer"):
            t = 0.0
            for _ in range(opts["batches"]):
                jobs = [NOOP.new({"n": i}, queue="idle") for i in range(5_000)]
                t0 = time.perf_counter()
                await Oban.get_instance("Peer").enqueue_many(jobs)
                t += time.perf_counter() - t0
            out["bulk_rate"] = opts["batches"] * 5_000 / t
        for c in opts["concurrency"]:
            async with pool.connection() as conn:
                await conn.execute("TRUNCATE oban_jobs")
                await conn.execute(
                    "INSERT INTO oban_jobs (queue, worker, args) SELECT 'bench', %s, "
                    "jsonb_build_object('n', n) FROM generate_series(1, %s) AS n",
                    [Noop.__module__ + ".Noop", opts["count"]],
                )
            SEEN.clear()
            DONE.clear()
            TARGET = opts["count"]
            async with Oban(pool=pool, name="Peer", queues={"bench": c}):
                await asyncio.wait_for(DONE.wait(), 300)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    async with pool.connection() as conn:
                        cur = await conn.execute(
                            "SELECT count(*), count(DISTINCT id), max(attempt), "
                            "extract(epoch FROM max(completed_at) - min(attempted_at)) "
                            "FROM oban_jobs WHERE state = 'completed'"
                        )
                        done, distinct, attempt, span = await cur.fetchone()  # type: ignore[misc]
                    if done >= opts["count"]:
                        break
                    await asyncio.sleep(0.05)
            ok = done == distinct == opts["count"] == len(set(SEEN)) == len(SEEN) and attempt == 1
            out[f"drain_c{c}"] = {"db_rate": done / float(span), "ok": ok}
    finally:
        await pool.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
