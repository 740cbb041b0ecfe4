"""Bulk insert of this checkout against another one, or against pgqueuer, as interleaved pairs.

    python -m bench.insert_ab /path/to/other/checkout [--pairs 3] [--size 20000] [--reps 3]
    python -m bench.insert_ab pgqueuer [--peer-python /path/to/venv/bin/python] [--python PY]
                                       [--ours /path/to/checkout]

Each side runs in a process of its own on a database of its own made for it (the other
checkout with the same interpreter, its own ``oban_py`` first on the path; pgqueuer 1.6 in its
venv through ``bench/peer_pgqueuer.py``), the order alternating between pairs. A run times
what the anchor harness times, on emptied tables ``reps`` times: ours builds ``size`` jobs
with ``Worker.new`` from prebuilt args (``{"i": k}``) and inserts them with one
``enqueue_many`` call of a started ``Oban`` (its pool, as an application calls it);
pgqueuer JSON-encodes the same args and makes one ``Queries.enqueue`` call of them.

Figures: ``cold_rate``, the first call of the process (nothing run before it but opening
the client: the anchor harness's condition), ``built_rate``, the median of the later calls, and
medians of CPU per job: the build's (pgqueuer: the encoding), the client's during the call, and
the server's (the bench database's backends, from ``/proc/<pid>/schedstat``: a local server
only). On a shared machine wall rates swing with the other sessions' load; CPU per job moves
far less, which makes it the figure to compare between trees. ``--python`` runs our side with
another interpreter (the anchor harness's venvs are Python 3.12).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import db
from bench.pairs import interleaved, ratios_line
from bench.peers import PEERS, _ensure_venv, _url
from bench.scenarios import BenchFailure, summary

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("build_us", "call_client_us", "call_server_us", "cold_rate", "built_rate")
PGQUEUER = "pgqueuer"


def _oncpu(pid: int) -> float:
    # Nanoseconds on the CPU, the first field of schedstat: finer than the ticks of /proc/stat.
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except OSError:
        return 0.0  # a backend that exited meanwhile


def _backends_cpu(bench: db.BenchDatabase) -> dict[int, float]:
    with psycopg.connect(bench.admin_dsn, autocommit=True) as conn:
        pids = db.backend_pids(conn, bench.name)
    return {pid: _oncpu(pid) for pid in pids}


async def _measure(dsn: str, size: int, reps: int) -> dict[str, Any]:
    from oban_py import Job, Oban, Worker

    class Noop(Worker):
        queue = "idle"
        name = "Bench.Noop"

        async def process(self, job: Job) -> None:
            pass

    bench = db.BenchDatabase(dsn)
    bench.create()
    runs: list[dict[str, float]] = []
    try:
        oban = Oban(dsn=bench.dsn)
        await oban.start()
        try:
            args_list = [{"i": k} for k in range(size)]
            for _ in range(reps):
                # Off the loop: the started node's duties (the stager's transaction) run on it,
                # and a TRUNCATE waiting for their lock there would wait forever.
                await asyncio.to_thread(bench.reset)
                gc.collect()
                before = await asyncio.to_thread(_backends_cpu, bench)
                t0, c0 = time.perf_counter(), time.process_time()
                jobs = [Noop.new(a) for a in args_list]
                c1 = time.process_time()
                inserted = await oban.enqueue_many(jobs)
                t2, c2 = time.perf_counter(), time.process_time()
                after = await asyncio.to_thread(_backends_cpu, bench)
                stored = await asyncio.to_thread(bench.one, "SELECT count(*) FROM oban_jobs")
                if len(inserted) != size or stored != size:
                    raise BenchFailure(f"the bulk call did not store {size} jobs")
                server = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
                runs.append(
                    {
                        "build_us": (c1 - c0) / size * 1e6,
                        "call_client_us": (c2 - c1) / size * 1e6,
                        "call_server_us": server / size * 1e6,
                        "rate": size / (t2 - t0),
                    }
                )
                del jobs, inserted
        finally:
            await oban.stop()
    finally:
        bench.drop()
    warm = runs[1:] or runs
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "rate"}
    out["cold_rate"] = runs[0]["rate"]
    out["built_rate"] = statistics.median(r["rate"] for r in warm)
    out["oban_py"] = sys.modules["oban_py"].__file__
    return out


def _run_ours(tree: Path | None, python: str, size: int, reps: int) -> dict[str, float]:
    # Both sides run this file's measurement; only ``oban_py`` comes from the other tree, through
    # a directory that holds nothing else, ahead of this one on the path.
    with tempfile.TemporaryDirectory() as shim:
        path = [str(ROOT)]
        if tree is not None:
            (Path(shim) / "oban_py").symlink_to(tree / "oban_py")
            path.insert(0, shim)
        done = subprocess.run(
            [python, str(Path(__file__).resolve()), "--child", str(size), str(reps)],
            cwd=shim,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(path)},
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BenchFailure(f"insert run failed: {done.stderr.strip()[-500:]}")
        # The figures, and the path of the ``oban_py`` the run imported.
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        expected = (tree or ROOT) / "oban_py"
        if Path(result.pop("oban_py")).resolve().parent != expected.resolve():
            raise BenchFailure(f"the run did not import {expected}")
    return result


def _run_pgqueuer(python: Path, size: int, reps: int) -> dict[str, float]:
    admin = db.server_dsn()
    name = f"pgq_ab_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        opts = {"dsn": _url(admin, name), "bulk_built": {"size": size, "reps": reps}}
        driver = next(p for p in PEERS if p.key == PGQUEUER).driver
        done = subprocess.run(
            [str(python), str(driver), json.dumps(opts)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise BenchFailure(f"pgqueuer run failed: {done.stderr.strip()[-500:]}")
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])["bulk_built"]
        return result
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            conn.execute(drop)


def _peer_python(given: Path | None) -> Path:
    if given is not None:
        return given
    python = _ensure_venv(next(p for p in PEERS if p.key == PGQUEUER))
    if python is None:
        raise BenchFailure("pgqueuer is not installable here; give --peer-python")
    return python


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        size, reps = int(sys.argv[2]), int(sys.argv[3])
        print(json.dumps(asyncio.run(_measure(db.server_dsn(), size, reps))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.insert_ab", description=__doc__)
    parser.add_argument("other", help="another checkout of this repository, or 'pgqueuer'")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3, help="bulk calls per run (the 1st cold)")
    parser.add_argument("--python", default=sys.executable, help="interpreter of our side(s)")
    parser.add_argument("--peer-python", type=Path, help="pgqueuer's venv interpreter")
    parser.add_argument("--ours", type=Path, help="our side's oban_py from this checkout instead")
    args = parser.parse_args()
    peer = args.other == PGQUEUER
    other = "pgqueuer" if peer else "other"
    peer_python = _peer_python(args.peer_python) if peer else None
    sides: dict[str, dict[str, list[float]]] = {
        side: {name: [] for name in FIGURES} for side in ("this", other)
    }
    ratios: dict[str, list[float]] = {"cold_rate": [], "built_rate": []}
    for pair, order in interleaved(args.pairs, ("this", other)):
        found: dict[str, Any] = {}
        for side in order:
            if side == "this":
                ours = args.ours.resolve() if args.ours else None
                found[side] = _run_ours(ours, args.python, args.size, args.reps)
            elif peer_python is not None:
                found[side] = _run_pgqueuer(peer_python, args.size, args.reps)
            else:
                tree = Path(args.other).resolve()
                found[side] = _run_ours(tree, args.python, args.size, args.reps)
            for name in FIGURES:
                sides[side][name].append(found[side][name])
        for name in ratios:
            ratios[name].append(found["this"][name] / found[other][name])
        print(
            f"pair {pair} ({order[0]} first): "
            + "; ".join(
                f"{side}: build {f['build_us']:.2f} µs, call client {f['call_client_us']:.2f}"
                f" + server {f['call_server_us']:.2f} µs/job, cold {f['cold_rate']:,.0f}"
                f" jobs/s, warm {f['built_rate']:,.0f}"
                for side, f in found.items()
            )
            + f"; this/{other} cold {ratios['cold_rate'][-1]:.2f}, warm"
            f" {ratios['built_rate'][-1]:.2f}",
            flush=True,
        )
    for side, figures in sides.items():
        text = ", ".join(
            f"{name} {'/'.join(f'{v:,.2f}' for v in summary(values))}"
            for name, values in figures.items()
        )
        print(f"{side:>8} (min/median/max): {text}")
    for name, values in ratios.items():
        print(ratios_line(f"this/{other} {name} (min/median/max)", values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
