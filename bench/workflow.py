"""A 1 -> N -> 1 workflow end to end, and what releasing costs per job.

    python -m bench.workflow [--width 1000] [--runs 3] [--concurrency 50]

Each run inserts one workflow (a root, ``width`` no-op steps after it, one fan-in after them
all) on a node already running, and times from the ``enqueue`` call to the fan-in's completion
in the database: jobs/s = (width + 2) / that time. The release overhead is read from the
``oban.workflows`` spans and ``oban.workflow.release`` events of this node: the time its passes
took (on the releaser's task, not the workers') divided by the jobs they moved, and the number of
passes. A plain drain of the same count of no-op jobs on the same node is timed alongside, as
the baseline of what the node does without workflows.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from bench import db
from oban_py import Job, Oban, Worker, telemetry
from oban_py.workflows import Workflow


class Step(Worker):
    name = "Bench.WfStep"

    async def process(self, job: Job) -> None:
        return None


PASSES: list[int] = []
MOVED: list[int] = []


def _on_event(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    if event == "oban.workflows.stop":
        PASSES.append(int(measurements["duration"]))
    elif event == "oban.workflow.release":
        MOVED.append(int(measurements["count"]))


async def _wait_completed(dsn: str, query: str, params: Any) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while True:
            row = await (await conn.execute(query, params)).fetchone()
            if row and row[0]:
                return
            await asyncio.sleep(0.005)


async def _phases(dsn: str, ids: list[int]) -> dict[str, float]:
    """Milliseconds between the workflow's milestones, from the database's own timestamps."""
    root, steps, last = ids[0], ids[1:-1], ids[-1]
    query = """
        SELECT 1000 * extract(epoch FROM r.completed_at - r.inserted_at),
               1000 * extract(epoch FROM min(s.attempted_at) - r.completed_at),
               1000 * extract(epoch FROM max(s.completed_at) - min(s.attempted_at)),
               1000 * extract(epoch FROM f.attempted_at - max(s.completed_at)),
               1000 * extract(epoch FROM f.completed_at - f.attempted_at)
        FROM oban_jobs AS r, oban_jobs AS s, oban_jobs AS f
        WHERE r.id = %s AND s.id = ANY(%s) AND f.id = %s
        GROUP BY r.completed_at, r.inserted_at, f.attempted_at, f.completed_at
    """
    names = ("root ran", "root done -> first step", "steps", "last step -> fan-in", "fan-in")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute(query, (root, steps, last))).fetchone()
    assert row is not None
    return {name: round(float(value), 1) for name, value in zip(names, row, strict=True)}


async def run(dsn: str, width: int, runs: int, concurrency: int) -> None:
    telemetry.attach("bench-workflow", ["oban.workflows.stop", "oban.workflow.release"], _on_event)
    async with Oban(dsn=dsn, queues={"wf": concurrency}, peer=False, node="bench-wf") as oban:
        for i in range(runs):
            PASSES.clear()
            MOVED.clear()
            wf = Workflow()
            wf.add("root", Step.new({}, queue="wf"))
            names = wf.fan_out("step", [Step.new({}, queue="wf") for _ in range(width)], "root")
            wf.add("fan_in", Step.new({}, queue="wf"), deps=names)
            started = time.monotonic()
            jobs = await wf.enqueue(oban)
            await _wait_completed(
                dsn, "SELECT state = 'completed' FROM oban_jobs WHERE id = %s", (jobs[-1].id,)
            )
            took = time.monotonic() - started
            ids = [j.id for j in jobs if j.id is not None]
            if len(ids) != len(jobs):
                raise RuntimeError("the workflow's enqueue returned jobs without ids")
            phases = await _phases(dsn, ids)
            spent = sum(PASSES) / 1e6
            moved = sum(MOVED)
            print(
                f"workflow run {i + 1}: {len(jobs)} jobs in {took:.2f} s = {len(jobs) / took:,.0f}"
                f" jobs/s; releaser: {len(PASSES)} passes, {spent:.1f} ms,"
                f" {moved} jobs moved, {spent / max(moved, 1):.3f} ms per released job",
                flush=True,
            )
            print(f"  phases (ms): {phases}", flush=True)
            plain = [Step.new({}, queue="wf") for _ in range(width + 2)]
            started = time.monotonic()
            inserted = await oban.enqueue_many(plain)
            last = max(j.id for j in inserted if j.id is not None)
            await _wait_completed(
                dsn,
                "SELECT count(*) = %s FROM oban_jobs WHERE id <= %s AND id >= %s"
                " AND state = 'completed'",
                (len(plain), last, last - len(plain) + 1),
            )
            took = time.monotonic() - started
            print(
                f"plain run {i + 1}: {len(plain)} jobs in {took:.2f} s ="
                f" {len(plain) / took:,.0f} jobs/s",
                flush=True,
            )
    telemetry.detach("bench-workflow")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workflow", description=__doc__)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    bench = db.BenchDatabase(db.server_dsn())
    bench.create()
    try:
        asyncio.run(run(bench.dsn, args.width, args.runs, args.concurrency))
    finally:
        bench.drop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
