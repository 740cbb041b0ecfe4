"""Drive ``pgqueuer`` 1.6 (PyPI) through our bulk and drain scenarios; run by the peer's own
interpreter (``/tmp/peer-pgqueuer/bin/python bench/peer_pgqueuer.py '<json>'``), so it imports
nothing of ours. Options: ``dsn`` (a database of its own, made and dropped by ``peers.py``),
``batches``, ``count``, ``concurrency``, ``bulk_one``. Prints one JSON line of figures.

bulk_one_rate
    one ``Queries.enqueue`` call of ``bulk_one`` jobs on emptied tables (``bulk_one_ok``: all
    of them stored), for ``bench/insert_pairs.py``.

bulk_built
    ``{"size": n, "reps": r}``, for ``bench/insert_ab.py``: ``r`` calls on emptied tables, each
    timing what the anchor harness's adapter times: the JSON encoding of ``n`` prebuilt args
    (``{"i": k}``) and one ``Queries.enqueue`` of them. The first call of the process is the
    cold one the anchor harness times. Figures as ``insert_ab`` reads them: ``cold_rate``,
    ``built_rate`` (median of the later calls), and per job the encoding's CPU (``build_us``),
    the client's CPU during the call and its server backend's (``/proc/<pid>/schedstat``).

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
import statistics
import sys
import time
from pathlib import Path
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


def _oncpu(pid: int) -> float:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


async def _bulk_built(dsn: str, size: int, reps: int) -> Any:
    # A connection of its own, opened after the install as the anchor harness's adapter does.
    conn = await asyncpg.connect(dsn)
    try:
        return await _bulk_runs(conn, Queries(AsyncpgDriver(conn)), size, reps)
    finally:
        await conn.close()


async def _bulk_runs(conn: asyncpg.Connection, queries: Queries, size: int, reps: int) -> Any:
    pid = conn.get_server_pid()
    args_list = [{"i": k} for k in range(size)]
    runs: list[dict[str, float]] = []
    for _ in range(reps):
        await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
        t0, c0 = time.perf_counter(), time.process_time()
        payloads: list[bytes | None] = [json.dumps(a).encode() for a in args_list]
        c1, s1 = time.process_time(), _oncpu(pid)
        ids = await queries.enqueue([ENTRYPOINT] * size, payloads, [0] * size)
        t2, c2, s2 = time.perf_counter(), time.process_time(), _oncpu(pid)
        stored = await conn.fetchval("SELECT count(*) FROM pgqueuer")
        if len(ids) != size or stored != size:
            raise RuntimeError(f"pgqueuer stored {stored} of {size}")
        runs.append(
            {
                "build_us": (c1 - c0) / size * 1e6,
                "call_client_us": (c2 - c1) / size * 1e6,
                "call_server_us": (s2 - s1) / size * 1e6,
                "rate": size / (t2 - t0),
            }
        )
    warm = runs[1:] or runs
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "rate"}
    out["cold_rate"] = runs[0]["rate"]
    out["built_rate"] = statistics.median(r["rate"] for r in warm)
    return out


async def _drain(conn: asyncpg.Connection, dsn: str, count: int, c: int) -> dict[str, Any]:
    await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
    await _enqueue(Queries(AsyncpgDriver(conn)), count)
    seen: list[int] = []
    worker_conn = await asyncpg.connect(dsn)
    qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))

    @qm.entrypoint(ENTRYPOINT)  # type: ignore[untyped-decorator]
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
        if built := opts.get("bulk_built"):
            out["bulk_built"] = await _bulk_built(opts["dsn"], built["size"], built["reps"])
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
