"""Insert rates as interleaved pairs, each pair under the same machine load.

    python -m bench.insert_pairs                 # 3 pairs of each
    python -m bench.insert_pairs --pairs 5 --no-peer

bulk: one ``enqueue_many`` call of 20,000 jobs (built beforehand, the call alone timed), the
same call with its jobs built by ``Worker.new`` inside the timed region (what an application's
code does, and what the anchor harness times), the server inserting the same rows by itself
(``generate_series``: its own bound), and one ``Queries.enqueue`` call of 20,000 jobs by
pgqueuer 1.6 (its own venv and database, see ``bench/peers.py``; ``--no-peer`` skips it).
single: 1,000 sequential ``enqueue`` calls on an idle client timed alone (their jobs built just
before each block of 50, as the bulk figure), 1,000 more building each ``Job`` in the timed
loop, and one-row ``INSERT``s sent one at a time on the connection the client holds (the
server's round-trip rate), alternating in blocks of 50. Every count is checked in the database.
Prints each pair and the medians, one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from bench import db
from bench.peers import PEERS, _ensure_venv, _url
from bench.scenarios import BenchFailure
from oban_py import Client, Job, Worker

RAW = "INSERT INTO oban_jobs (queue, worker, args) VALUES (%s, %s, %s::jsonb)"
# The server inserting the same rows from nothing (no client encoding, no JSON unpacking), as
# one statement returning what ours returns: the bound of any client's bulk insert.
SERVER_BULK = """
INSERT INTO oban_jobs (state, queue, worker, args, meta, tags, max_attempts, priority)
SELECT 'available', 'idle', 'Bench.Noop', jsonb_build_object('n', g), '{}', '{}', 20, 0
FROM generate_series(1, %s) AS g
RETURNING id, inserted_at, scheduled_at
"""


def _job(n: int) -> Job:
    return Job(worker="Bench.Noop", queue="idle", args={"n": n})


class Noop(Worker):
    queue = "idle"
    name = "Bench.Noop"

    async def process(self, job: Job) -> None:
        pass


async def bulk(bench: db.BenchDatabase, client: Client, size: int) -> tuple[float, float]:
    """The rate, and the share of the call's wall time this process spent on the CPU (the
    rest is waiting for the server)."""
    bench.reset()
    jobs = [_job(i) for i in range(size)]
    t0, c0 = time.perf_counter(), time.process_time()
    inserted = await client.enqueue_many(jobs)
    spent, cpu = time.perf_counter() - t0, time.process_time() - c0
    stored = bench.one("SELECT count(*) FROM oban_jobs")
    if len(inserted) != size or stored != size:
        raise BenchFailure(f"bulk stored {stored} of {size}")
    return size / spent, cpu / spent


async def bulk_built(bench: db.BenchDatabase, client: Client, size: int) -> float:
    """The rate of one ``enqueue_many`` call with its jobs built by ``Worker.new`` in it."""
    bench.reset()
    t0 = time.perf_counter()
    inserted = await client.enqueue_many([Noop.new({"i": i}) for i in range(size)])
    spent = time.perf_counter() - t0
    if len(inserted) != size or bench.one("SELECT count(*) FROM oban_jobs") != size:
        raise BenchFailure(f"bulk with Worker.new did not store {size}")
    return size / spent


async def single(bench: db.BenchDatabase, client: Client, count: int) -> tuple[float, float, float]:
    """Sequential ``enqueue`` calls and raw one-row INSERTs, alternating in blocks of 50 so
    all see the same load, on the one connection the client holds for its calls: all talk to
    the same server process. (On two cores, two connections alternating differ by 60-100 µs a
    call with where the scheduler happens to put their server processes, enough to swamp what
    is measured here.) Two kinds of our blocks: the call alone (each block's jobs built just
    before it, as the bulk figure times the call alone), and building each ``Job`` in the loop
    as well. Rates: the call, the call with building, raw."""
    bench.reset()
    block = 50
    timed = {"call": 0.0, "built": 0.0, "raw": 0.0}

    async def raw_block(conn: psycopg.AsyncConnection[Any], _: None, __: object) -> None:
        t0 = time.perf_counter()
        for _n in range(block):
            await conn.execute(RAW, ("idle", "Bench.Noop", "{}"), prepare=True)
        timed["raw"] += time.perf_counter() - t0

    for i in range(20):
        await client.enqueue(_job(i))
    for _ in range(20 // block + 1):
        await pooled(client, raw_block)
    timed["raw"] = 0.0
    blocks = count // block
    for _ in range(blocks):
        jobs = [_job(i) for i in range(block)]
        t0 = time.perf_counter()
        for job in jobs:
            await client.enqueue(job)
        timed["call"] += time.perf_counter() - t0
        await pooled(client, raw_block)
        t0 = time.perf_counter()
        for i in range(block):
            await client.enqueue(_job(i))
        timed["built"] += time.perf_counter() - t0
        await pooled(client, raw_block)
    done = blocks * block
    stored = bench.one("SELECT count(*) FROM oban_jobs")
    expected = 4 * done + 20 + block
    if stored != expected:
        raise BenchFailure(f"single stored {stored} of {expected}")
    return done / timed["call"], done / timed["built"], 2 * done / timed["raw"]


async def pooled(client: Client, use: Any) -> None:
    # The client's own way to its held connection (private: a benchmark may look inside).
    await client._pools.run(use, None)


def server_bulk(bench: db.BenchDatabase, size: int) -> float:
    bench.reset()
    with psycopg.connect(bench.dsn, autocommit=True) as conn:
        t0 = time.perf_counter()
        conn.execute(SERVER_BULK.encode(), (size,)).fetchall()
        spent = time.perf_counter() - t0
    return size / spent


def peer_bulk(bench: db.BenchDatabase, size: int) -> float | None:
    peer = next(p for p in PEERS if p.key == "pgqueuer")
    python = _ensure_venv(peer)
    if python is None:
        print(f"peer {peer.label} skipped: not installable in {peer.venv}")
        return None
    name = f"pgq_pair_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(bench.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        opts = {"dsn": _url(bench.admin_dsn, name), "bulk_one": size, "batches": 0}
        done = subprocess.run(
            [str(python), str(peer.driver), json.dumps(opts)], capture_output=True, text=True
        )
        if done.returncode != 0:
            print(f"peer {peer.label} failed: {done.stderr.strip()[-300:]}")
            return None
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if not result.get("bulk_one_ok"):
            raise BenchFailure("pgqueuer did not store every job of its bulk call")
        rate: float = result["bulk_one_rate"]
        return rate
    finally:
        with psycopg.connect(bench.admin_dsn, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            conn.execute(drop)


async def run(pairs: int, size: int, count: int, with_peer: bool) -> dict[str, Any]:
    bench = db.BenchDatabase(db.server_dsn())
    bench.create()
    figures: dict[str, list[float]] = {
        "bulk": [],
        "bulk_client_share": [],
        "bulk_built": [],
        "server_bulk": [],
        "peer": [],
        "single": [],
        "single_built": [],
        "raw": [],
    }
    try:
        async with Client(dsn=bench.dsn, name="bench.pairs") as client:
            await client.enqueue_many([_job(0), _job(1)])  # opens the pool, warms statements
            for n in range(pairs):
                ours, share = await bulk(bench, client, size)
                figures["bulk"].append(ours)
                figures["bulk_client_share"].append(share)
                built_rate = await bulk_built(bench, client, size)
                figures["bulk_built"].append(built_rate)
                bound = server_bulk(bench, size)
                figures["server_bulk"].append(bound)
                theirs = peer_bulk(bench, size) if with_peer else None
                if theirs is not None:
                    figures["peer"].append(theirs)
                one, built, raw = await single(bench, client, count)
                figures["single"].append(one)
                figures["single_built"].append(built)
                figures["raw"].append(raw)
                peer_text = f"{theirs:,.0f}" if theirs is not None else "-"
                print(
                    f"pair {n + 1}: enqueue_many {size:,} in one call {ours:,.0f} jobs/s "
                    f"(client CPU {share:.0%} of it; the server alone {bound:,.0f}; "
                    f"with Worker.new inside {built_rate:,.0f}), "
                    f"pgqueuer {peer_text}; "
                    f"single enqueue {one:,.0f}/s ({built:,.0f}/s building each Job) vs raw "
                    f"INSERT {raw:,.0f}/s ({one / raw:.2f}; {built / raw:.2f})",
                    flush=True,
                )
    finally:
        bench.drop()
    medians = {k: statistics.median(v) for k, v in figures.items() if v}
    ratios = [a / b for a, b in zip(figures["single"], figures["raw"], strict=True)]
    medians["single_ratio"] = statistics.median(ratios)
    built_ratios = [a / b for a, b in zip(figures["single_built"], figures["raw"], strict=True)]
    medians["single_built_ratio"] = statistics.median(built_ratios)
    bounds = [a / b for a, b in zip(figures["bulk"], figures["server_bulk"], strict=True)]
    medians["bulk_of_server"] = statistics.median(bounds)
    print(
        f"median: enqueue_many {medians['bulk']:,.0f} jobs/s = {medians['bulk_of_server']:.2f} x "
        f"(with Worker.new inside: {medians['bulk_built']:,.0f}) "
        f"the server alone {medians['server_bulk']:,.0f} (pgqueuer "
        f"{medians.get('peer', float('nan')):,.0f}); single {medians['single']:,.0f}/s = "
        f"{medians['single_ratio']:.2f} x raw {medians['raw']:,.0f}/s (building each Job too: "
        f"{medians['single_built_ratio']:.2f} x)"
    )
    print(json.dumps({"pairs": figures, "median": medians}))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.insert_pairs", description=__doc__)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--size", type=int, default=20_000, help="jobs in the bulk call")
    parser.add_argument("--count", type=int, default=1_000, help="sequential single enqueues")
    parser.add_argument("--no-peer", action="store_true", help="skip pgqueuer")
    args = parser.parse_args()
    asyncio.run(run(args.pairs, args.size, args.count, not args.no_peer))


if __name__ == "__main__":
    main()
