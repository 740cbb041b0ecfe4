"""Drive ``pgqueuer`` 1.6 (PyPI) through our bulk and drain scenarios; run by the peer's own
interpreter (``/tmp/peer-pgqueuer/bin/python bench/peer_pgqueuer.py '<json>'``), so it imports
nothing of ours. Options: ``dsn`` (a database of its own, made and dropped by ``peers.py``),
``batches``, ``count``, ``concurrency``, ``bulk_one``. Prints one JSON line of figures.

bulk_one_rate
    one ``Queries.enqueue`` call of ``bulk_one`` jobs on emptied tables (``bulk_one_ok``: all
    of them stored), for ``bench/insert_pairs.py``.

The schema is installed with ``Queries.install()``; every connection is one asyncpg
connection, as pgqueuer's README sets it up.

bulk_rate
    ``batches`` calls of ``Queries.enqueue`` with lists of 5,000 entrypoints/payloads/priorities
    (its batch form); rate = jobs inserted / sum of the wall time of the calls alone
    (``perf_counter`` around each call, payloads built beforehand), as ``peer_oban.py`` does.

drain_c{c}
    ``count`` no-op jobs are enqueued in one batch call on emptied tables, then
    ``QueueManager.run(mode=drain, max_concurrent_tasks=c, batch_size=c // 2)``: the
    worker-wide cap is the analogue of our per-node queue limit (a per-entrypoint
    ``concurrency_limit`` is global across workers, like Oban's ``global_limit``), and
    ``c // 2`` is the largest batch pgqueuer accepts under that cap. pgqueuer deletes a job
    when it succeeds and records each transition in ``pgqueuer_log`` with a server-side
    ``created`` timestamp, so db_rate = successful rows / (max(created) of 'successful' -
    min(created) of 'picked'), the same span as ours (last completed_at - first
    attempted_at). ``ok`` checks completion count = inserted: 'successful' rows = distinct
    job ids = 'picked' rows = ``count``, no 'exception'/'failed' rows, no job left in
    ``pgqueuer``, and the ids the entrypoint saw are ``count`` distinct ones.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from pgqueuer.types import QueueExecutionMode

ENTRYPOINT = "bench_noop"
BATCH = 5_000

CHECK = """
SELECT count(*) FILTER (WHERE status = 'successful') AS done,
       count(DISTINCT job_id) FILTER (WHERE status = 'successful') AS distinct_done,
       count(*) FILTER (WHERE status = 'picked') AS picked,
       count(*) FILTER (WHERE status IN ('exception', 'failed')) AS failed,
       extract(epoch FROM max(created) FILTER (WHERE status = 'successful')
                        - min(created) FILTER (WHERE status = 'picked')) AS span
FROM pgqueuer_log
"""


async def _enqueue(queries: Queries, count: int) -> float:
    payloads: list[bytes | None] = [json.dumps({"n": i}).encode() for i in range(count)]
    t0 = time.perf_counter()
    await queries.enqueue([ENTRYPOINT] * count, payloads, [0] * count)
    return time.perf_counter() - t0


async def _drain(conn: asyncpg.Connection, dsn: str, count: int, c: int) -> dict[str, Any]:
    await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
    await _enqueue(Queries(AsyncpgDriver(conn)), count)
    seen: list[int] = []
    worker_conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))

    @qm.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        seen.append(job.id)

    try:
        await asyncio.wait_for(
            qm.run(mode=QueueExecutionMode.drain, batch_size=c // 2, max_concurrent_tasks=c),
            300,
        )
    finally:
        if not worker_conn.is_closed():
            await worker_conn.close()
    # run() flushes its log buffer on exit; the poll only guards against a late flush.
    deadline = time.monotonic() + 30
    while True:
        row = await conn.fetchrow(CHECK)
        assert row is not None
        if row["done"] >= count or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
    ok = (
        row["done"] == row["distinct_done"] == row["picked"] == count == len(set(seen)) == len(seen)
        and row["failed"] == 0
        and left == 0
    )
    return {"db_rate": row["done"] / float(row["span"]), "ok": ok}


async def main(opts: dict[str, Any]) -> dict[str, Any]:
    conn = await asyncpg.connect(opts["dsn"])
    out: dict[str, Any] = {}
    try:
        await conn.execute("SET client_min_messages = warning")
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        if opts.get("bulk_one"):
            # One call of ``bulk_one`` jobs on emptied tables (bench/insert_pairs.py).
            await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
            count = opts["bulk_one"]
            out["bulk_one_rate"] = count / await _enqueue(queries, count)
            stored = await conn.fetchval("SELECT count(*) FROM pgqueuer")
            out["bulk_one_ok"] = stored == count
        spent = 0.0
        for _ in range(opts.get("batches", 0)):
            spent += await _enqueue(queries, BATCH)
        if spent:
            out["bulk_rate"] = opts["batches"] * BATCH / spent
        for c in opts.get("concurrency", []):
            out[f"drain_c{c}"] = await _drain(conn, opts["dsn"], opts["count"], c)
    finally:
        await conn.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
