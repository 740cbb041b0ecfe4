"""Where the enqueue → start latency goes, stage by stage, timestamped along the path.

    python -m bench.latency_path [--probes 200] [--spacing 0.02] [--uvloop]
                                 [--other /path/to/other/checkout --pairs 4]

Shaped like the anchor harness's latency measure: an idle node (one queue, limit 10) in its
own process, and a separate client process enqueuing ``probes`` jobs one at a time, one every
``spacing`` seconds, each carrying ``t0 = time.time()`` taken just before the enqueue call. The
node is instrumented from outside the package (patched methods record ``time.time()``): the
LISTEN connection's dispatch, the producer's fetch statement being sent and its rows coming
back, the attempt task starting and the handler running. The server's own clocks add the
insert's and the claim's ``now()`` (``inserted_at``, ``attempted_at``). Prints the median and
p99 of each stage in milliseconds; every probe must run exactly once. With ``--other`` the
two checkouts alternate in pairs (the other one's ``oban_py`` first on the path).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "lat"
#: the node's recorder, called by the handler with the job's id
_SEEN: list[Any] = []


def _probe_class() -> Any:
    import oban_py

    @oban_py.worker(queue=QUEUE)
    class Probe:
        async def process(self, job: Any) -> None:
            _SEEN[0](job.id)

    return Probe


Probe = _probe_class()


def _node(dsn: str, probes: int, use_uvloop: bool) -> None:
    import psycopg

    import oban_py
    from oban_py import notifier as notifier_mod
    from oban_py.node import attempt as attempt_mod
    from oban_py.node import producer as producer_mod

    events: dict[str, list[float]] = {
        "notify": [],
        "woke": [],
        "fetch_sent": [],
        "fetch_back": [],
        "claimed": [],
    }
    started: dict[int, tuple[float, float]] = {}  # job id -> (task start, handler start)
    task_start: dict[int, float] = {}

    dispatch = notifier_mod.Notifier._dispatch

    def traced_dispatch(self: Any, full: str, text: str) -> None:
        events["notify"].append(time.time())
        dispatch(self, full, text)

    notifier_mod.Notifier._dispatch = traced_dispatch  # type: ignore[method-assign]

    # The original, from where producer.py imports it; the patch below replaces the name
    # producer.py looks up.
    from oban_py.aio import wait_event

    async def traced_wait_event(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
        out = await wait_event(event, timeout)
        events["woke"].append(time.time())
        return out

    producer_mod.wait_event = traced_wait_event  # type: ignore[attr-defined]

    execute = psycopg.AsyncCursor.execute

    async def traced_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if not (isinstance(query, bytes) and b"FOR UPDATE SKIP LOCKED" in query):
            return await execute(self, query, *args, **kwargs)
        events["fetch_sent"].append(time.time())
        out = await execute(self, query, *args, **kwargs)
        events["fetch_back"].append(time.time())
        return out

    psycopg.AsyncCursor.execute = traced_execute  # type: ignore[method-assign]

    claimed = attempt_mod.claimed

    async def traced_claimed(cur: Any) -> Any:
        out = await claimed(cur)
        events["claimed"].append(time.time())
        return out

    producer_mod.attempts.claimed = traced_claimed  # type: ignore[attr-defined]

    run = producer_mod.Producer._run

    async def traced_run(self: Any, running: Any) -> None:
        task_start[running.id] = time.time()
        await run(self, running)

    producer_mod.Producer._run = traced_run  # type: ignore[method-assign]

    finished: asyncio.Event | None = None

    def seen(job_id: int) -> None:
        started[job_id] = (task_start.get(job_id, float("nan")), time.time())
        if len(started) >= probes and finished is not None:
            finished.set()

    _SEEN.append(seen)

    async def main() -> None:
        nonlocal finished
        finished = asyncio.Event()
        oban = oban_py.Oban(dsn=dsn, queues={QUEUE: 10})
        await oban.start()
        print("ready", oban_py.__file__, flush=True)
        try:
            async with asyncio.timeout(120):
                await finished.wait()
        finally:
            await oban.stop()
        print(json.dumps({"events": events, "started": started}), flush=True)

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def _client(dsn: str, probes: int, spacing: float) -> None:
    import oban_py

    async def main() -> None:
        sent: dict[int, tuple[float, float]] = {}
        # As the anchor harness enqueues: a client-mode instance and ``Worker.enqueue``.
        oban = oban_py.Oban(dsn=dsn)
        await oban.start()
        try:
            start = time.monotonic()
            for k in range(probes):
                delay = start + k * spacing - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.time()
                job = await Probe.enqueue({"t0": t0})
                sent[job.id] = (t0, time.time())
        finally:
            await oban.stop()
        print(json.dumps(sent), flush=True)

    asyncio.run(main())


def main() -> int:
    # Here, not at the top: the node and client roles run this file as a script.
    from bench.latency_floor import summary

    parser = argparse.ArgumentParser(prog="python -m bench.latency_path", description=__doc__)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--spacing", type=float, default=0.02)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--other", type=Path, help="another checkout, run as interleaved pairs")
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--role", choices=("node", "client"), help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "node":
        _node(args.dsn, args.probes, args.uvloop)
        return 0
    if args.role == "client":
        _client(args.dsn, args.probes, args.spacing)
        return 0

    other = args.other.resolve() if args.other is not None else None
    sides: dict[str, dict[str, list[float]]] = {}
    for pair in range(args.pairs):
        order = ["this", "other"] if other is not None else ["this"]
        if pair % 2:
            order.reverse()
        for side in order:
            stages = _run_once(args, other if side == "other" else None)
            total = stages["total: t0 → handler start"]
            print(f"pair {pair + 1} {side:5s}: {summary(total)}", flush=True)
            for name, values in stages.items():
                sides.setdefault(side, {}).setdefault(name, []).extend(values)
    for side, stages in sides.items():
        print(
            f"{side}: {args.pairs} runs of {args.probes} probes, one every"
            f" {args.spacing * 1000:.0f} ms (ms, all probes pooled):"
        )
        for name, values in stages.items():
            print(f"  {name:45s} {summary(values)}")
    return 0


def _run_once(args: argparse.Namespace, tree: Path | None) -> dict[str, list[float]]:
    import psycopg

    from bench import db

    env = dict(os.environ)
    if tree is not None:
        # The other checkout's package first on the path, as bench.code_ab runs it.
        env["PYTHONPATH"] = os.pathsep.join([str(tree), env.get("PYTHONPATH", "")])
    bench = db.BenchDatabase(db.server_dsn())
    bench.create()
    try:
        # Run as a script from the tree under test: ``-m`` would put this checkout, and its
        # ``oban_py``, first on the path whatever PYTHONPATH says.
        me = [sys.executable, str(Path(__file__).resolve()), "--dsn", bench.dsn]
        me += ["--probes", str(args.probes), "--spacing", str(args.spacing)]
        node = subprocess.Popen(
            [*me, "--role", "node", *(["--uvloop"] if args.uvloop else [])],
            cwd=tree or ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert node.stdout is not None
        ready = node.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise SystemExit("node did not start")
        if tree is not None and not ready[1].startswith(str(tree)):
            raise SystemExit(f"the other tree's node runs {ready[1]}")
        time.sleep(2.0)  # idle, as the anchor harness leaves it
        client = [*me, "--role", "client"]
        out = subprocess.run(client, cwd=tree or ROOT, capture_output=True, text=True, env=env)
        sent = {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
        node_out, _ = node.communicate(timeout=60)
        traced = json.loads(node_out.strip().splitlines()[-1])
        with psycopg.connect(bench.dsn) as conn:
            rows = conn.execute(
                "SELECT id, extract(epoch FROM inserted_at), extract(epoch FROM attempted_at),"
                " attempt FROM oban_jobs WHERE queue = %s AND state = 'completed'",
                (QUEUE,),
            ).fetchall()
    finally:
        bench.drop()
    started = {int(k): v for k, v in traced["started"].items()}
    if len(rows) != args.probes or len(started) != args.probes or any(r[3] != 1 for r in rows):
        raise SystemExit(f"probes ran {len(started)}, completed rows {len(rows)}: not exactly once")
    events = {name: sorted(times) for name, times in traced["events"].items()}

    def first_after(name: str, moment: float) -> float:
        times = events[name]
        at = bisect.bisect_left(times, moment)
        return times[at] if at < len(times) else float("inf")

    stages: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        stages.setdefault(name, []).append(value)

    for job_id, inserted_at, attempted_at, _ in rows:
        inserted, attempted = float(inserted_at), float(attempted_at)
        t0, returned = sent[job_id]
        task, handler = started[job_id]
        notified = first_after("notify", inserted)
        woke = first_after("woke", notified)
        fetch_sent = first_after("fetch_sent", notified)
        fetch_back = first_after("fetch_back", fetch_sent)
        claimed = first_after("claimed", fetch_sent)
        add("total: t0 → handler start", handler - t0)
        add("enqueue call (t0 → returned)", returned - t0)
        add("  t0 → insert's now()", inserted - t0)
        add("insert's now() → NOTIFY dispatched on node", notified - inserted)
        add("  enqueue returned → NOTIFY dispatched", notified - returned)
        add("NOTIFY → fetch statement sent", fetch_sent - notified)
        if woke <= fetch_sent:  # a fetch sent from the notification itself never waits
            add("  NOTIFY → producer loop resumed", woke - notified)
        add("fetch sent → claimed rows back", claimed - fetch_sent)
        add("  fetch sent → claim's now()", attempted - fetch_sent)
        add("  claim's now() → execute returned", fetch_back - attempted)
        add("  execute returned → jobs built", claimed - fetch_back)
        add("claimed → attempt task start", task - claimed)
        add("task start → handler start", handler - task)
    return stages


if __name__ == "__main__":
    sys.exit(main())
