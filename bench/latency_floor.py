"""The floor under enqueue → start latency on this machine: the same path with no queue library.

    python -m bench.latency_floor [--probes 200] [--spacing 0.02] [--same-connection]

Shaped like ``bench.latency_path`` (and the anchor harness's latency measure), but with plain
psycopg and nothing else: a client process inserts one row into ``oban_jobs`` per ``spacing``
seconds in autocommit, notifying from ``RETURNING`` as oban_py's single insert does, with
``t0 = time.time()`` taken just before the call; a listener process waits on ``LISTEN``, and
on each notification claims up to ten available rows with one autocommit ``UPDATE ...
RETURNING`` (the shape of a fetch: index scan, ``FOR UPDATE SKIP LOCKED``, a durable commit) on
a second connection, or with ``--same-connection`` on the listening one. The time from ``t0``
to the claimed row in the listener's hands is what any library built this way pays before its
own code runs: two durable commits, a notification and the process wake-ups between them.
The spaced one-row insert alone is printed beside it (the client's own round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

CHANNEL = "public.oban_insert"
INSERT = (
    "INSERT INTO oban_jobs (queue, worker, args) VALUES ('floor', 'Floor', %s::jsonb) "
    'RETURNING id, pg_notify(%s, \'{"queue":"floor"}\')'
)
CLAIM = (
    "UPDATE oban_jobs SET state = 'executing', attempt = attempt + 1, "
    "attempted_at = timezone('UTC', now()), attempted_by = ARRAY['floor'] "
    "WHERE id IN (SELECT id FROM oban_jobs WHERE state = 'available' AND queue = 'floor' "
    "ORDER BY priority, scheduled_at, id LIMIT 10 FOR UPDATE SKIP LOCKED) "
    "RETURNING id, args"
)


def _listener(dsn: str, probes: int, same: bool) -> None:
    import psycopg

    async def main() -> None:
        listen = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        claim = listen if same else await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        await listen.execute(f'LISTEN "{CHANNEL}"')
        print("ready", flush=True)
        seen: dict[int, float] = {}
        while len(seen) < probes:
            # One notification at a time: the generator holds the connection while it waits,
            # and the claim may go out on that same connection.
            async for _ in listen.notifies(stop_after=1):
                pass
            cur = await claim.execute(CLAIM, prepare=True)
            now = time.time()
            for job_id, args in await cur.fetchall():
                seen[job_id] = now - args["t0"]
        print(json.dumps(list(seen.values())), flush=True)

    asyncio.run(main())


def _client(dsn: str, probes: int, spacing: float) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    async def main() -> None:
        calls: list[float] = []
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            start = time.monotonic()
            for k in range(probes):
                delay = start + k * spacing - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.time()
                await conn.execute(INSERT, (Jsonb({"t0": t0}), CHANNEL), prepare=True)
                calls.append(time.time() - t0)
        print(json.dumps(calls), flush=True)

    asyncio.run(main())


def summary(values: list[float]) -> str:
    """The median and the 99th percentile of ``values`` (seconds), in milliseconds."""
    ordered = sorted(v * 1000 for v in values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return f"p50 {statistics.median(ordered):6.2f}  p99 {p99:6.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency_floor", description=__doc__)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--spacing", type=float, default=0.02)
    parser.add_argument("--same-connection", action="store_true")
    parser.add_argument("--role", choices=("listener", "client"), help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "listener":
        _listener(args.dsn, args.probes, args.same_connection)
        return 0
    if args.role == "client":
        _client(args.dsn, args.probes, args.spacing)
        return 0

    from bench.db import BenchDatabase

    with BenchDatabase.fresh() as bench:
        dsn = bench.dsn
        me = [sys.executable, "-m", "bench.latency_floor", "--dsn", dsn, "--probes"]
        extra = ["--same-connection"] if args.same_connection else []
        listener = subprocess.Popen(
            [*me, str(args.probes), "--role", "listener", *extra],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ,
        )
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready"
        time.sleep(2)  # as the harness: an idle listener before the first probe
        client = subprocess.run(
            [*me, str(args.probes), "--role", "client", "--spacing", str(args.spacing)],
            capture_output=True,
            text=True,
            check=True,
        )
        calls: list[float] = json.loads(client.stdout.strip().splitlines()[-1])
        out, _ = listener.communicate(timeout=60)
        totals: list[Any] = json.loads(out.strip().splitlines()[-1])
    where = "the listening connection" if args.same_connection else "a second connection"
    print(f"{args.probes} probes, one every {args.spacing * 1000:.0f} ms, claim on {where} (ms):")
    print(f"  t0 → claimed row in the listener   {summary(totals)}")
    print(f"  the spaced insert call alone        {summary(calls)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
