"""Side-by-side runs through another library (``--peers``), in the same bench invocation.

``oban`` 0.7.0 from PyPI (needs Python >= 3.12) runs in its own venv at ``/tmp/peer-oban``,
created and installed on first use, through ``bench/peer_oban.py`` on a database of its own:
the same bulk insert (10 batches of 5,000) and 20,000-job drains at c=10/50/200, rates taken
from the database as ours are. A peer that cannot be installed or fails is skipped with the
reason. ``pgqueuer`` has no driver yet and is reported as skipped.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from statistics import median
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.db import BenchDatabase

PEER_VENV = Path("/tmp/peer-oban")
PEER_PYTHON = Path("/root/.pyenv/versions/3.12.1/bin/python")
DRIVER = Path(__file__).with_name("peer_oban.py")


def _ensure_venv() -> Path | None:
    python = PEER_VENV / "bin" / "python"
    probe = [str(python), "-c", "import oban, psycopg_pool"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not PEER_PYTHON.exists():
        return None
    steps = [
        [str(PEER_PYTHON), "-m", "venv", str(PEER_VENV)],
        [str(PEER_VENV / "bin" / "pip"), "install", "-q", "oban==0.7.0"],
    ]
    for step in steps:
        if subprocess.run(step, capture_output=True, timeout=600).returncode != 0:
            return None
    return python if subprocess.run(probe, capture_output=True).returncode == 0 else None


def _ours(ours: dict[str, Any], key: str, field: str) -> float | None:
    values = [r[field] for r in ours.get(key, []) if r.get(field) is not None]
    return median(values) if values else None


def run(bench: BenchDatabase, *, runs: int, jobs: int, ours: dict[str, Any]) -> dict[str, Any]:
    """Run the peers once each and print our/peer ratios for the scenarios both ran."""
    results: dict[str, Any] = {"pgqueuer": {"skipped": "no driver written yet"}}
    print("peers: pgqueuer skipped (no driver written yet)")
    python = _ensure_venv()
    if python is None:
        print("peers: oban 0.7.0 skipped (could not install it in /tmp/peer-oban)")
        results["oban"] = {"skipped": "not installable"}
        return results
    name = f"oban_peer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(bench.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        opts = {
            "dsn": make_conninfo(bench.admin_dsn, dbname=name),
            "batches": 10,
            "count": jobs,
            "concurrency": [10, 50, 200],
        }
        done = subprocess.run(
            [str(python), str(DRIVER), json.dumps(opts)], capture_output=True, text=True
        )
        if done.returncode != 0:
            print(f"peers: oban 0.7.0 failed, skipped: {done.stderr.strip()[-300:]}")
            results["oban"] = {"skipped": "failed", "stderr": done.stderr[-2000:]}
            return results
        peer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(bench.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    results["oban"] = peer
    print("oban 0.7.0 (PyPI), one run, same machine and server  (ours = median of our runs)")
    pairs = [("enqueue_many 5,000/batch", _ours(ours, "bulk", "rate"), peer.get("bulk_rate"))]
    for c in (10, 50, 200):
        drained = peer.get(f"drain_c{c}") or {}
        mark = "" if drained.get("ok", True) else " (peer check FAILED)"
        pairs.append(
            (f"drain c={c}{mark}", _ours(ours, f"drain_c{c}", "db_rate"), drained.get("db_rate"))
        )
    for label, mine, theirs in pairs:
        if mine is None or not theirs:
            print(f"  {label:<34} peer {theirs or 0:>10,.0f} jobs/s   (ours not run)")
            continue
        print(
            f"  {label:<34} ours {mine:>10,.0f}  peer {theirs:>10,.0f}  ratio {mine / theirs:.2f}"
        )
    return results
