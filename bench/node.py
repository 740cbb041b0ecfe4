"""The node under test, run in its own process so its CPU and RSS are its own.

``python -m bench.node drain '<json>'``: start a node on a filled queue, wait until every job
ran and its ack is in the database, print figures as one JSON line, then COPY the ids the worker
saw into ``bench_seen`` (a PRIMARY KEY: a job run twice fails loudly).

``python -m bench.node serve '<json>'``: run queues ``lat`` and ``load``, print ``ready``, and on
a line on stdin stop and print the insert → start latencies of the ``lat`` jobs as JSON.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

import psycopg

from bench import db
from oban_py import Job, Oban, Worker

SEEN: list[int] = []
LATENCIES: list[float] = []
DONE = asyncio.Event()
TARGET = 0


class Noop(Worker):
    """Does nothing but note that it ran."""

    name = "Bench.Noop"

    async def process(self, job: Job) -> None:
        SEEN.append(job.id)  # type: ignore[arg-type]
        if len(SEEN) >= TARGET:
            DONE.set()


class Probe(Worker):
    """Notes how long after its enqueue call began it started (monotonic is system-wide)."""

    name = "Bench.Probe"

    async def process(self, job: Job) -> None:
        LATENCIES.append(time.monotonic() - job.args["t0"])


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def drain(opts: dict[str, Any]) -> dict[str, Any]:
    global TARGET
    TARGET = opts["count"]
    dsn, queue = opts["dsn"], opts["queue"]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        pg_before = db.postgres_cpu()
        oban = Oban(
            dsn=dsn,
            queues={queue: {"limit": opts["concurrency"], **opts.get("queue_options", {})}},
            node="bench",
            peer=False,
            web=opts.get("web", True),
        )
        cpu0, t0 = time.process_time(), time.monotonic()
        await oban.start()
        await asyncio.wait_for(DONE.wait(), opts.get("timeout", 300))
        # Every job ran; the run ends when its acks are in the database.
        while True:
            # Above after_id: a retained history must not count, nor be counted every 5 ms.
            cur = await conn.execute(
                "SELECT count(*) FROM oban_jobs WHERE state = 'completed' AND id > %s",
                (opts.get("after_id", 0),),
                prepare=True,
            )
            row = await cur.fetchone()
            if row is not None and row[0] >= TARGET:
                break
            await asyncio.sleep(0.005)
        wall = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
        pids = [r[0] for r in await cur.fetchall()]
        server_cpu = db.server_cpu_since(pg_before, pids) if pg_before else None
        await oban.stop()
        result = {
            "wall": wall,
            "node_cpu": cpu,
            "server_cpu": server_cpu,
            "rss_mb": rss_peak_mb(),
            "seen": len(SEEN),
        }
        async with conn.cursor() as cur, cur.copy("COPY bench_seen (id) FROM STDIN") as copy:
            for job_id in SEEN:
                await copy.write_row((job_id,))
    return result


async def serve(opts: dict[str, Any]) -> dict[str, Any]:
    oban = Oban(dsn=opts["dsn"], queues={"lat": 10, "load": 50}, node="bench", peer=False)
    global TARGET
    TARGET = 1 << 62
    await oban.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await oban.stop()
    return {"latencies": LATENCIES, "load_seen": len(SEEN), "rss_mb": rss_peak_mb()}


def main() -> None:
    mode, raw = sys.argv[1], sys.argv[2]
    opts = json.loads(raw)
    run = drain if mode == "drain" else serve
    if opts.get("uvloop"):
        import uvloop

        result = uvloop.run(run(opts))
    else:
        result = asyncio.run(run(opts))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
