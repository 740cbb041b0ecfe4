"""Side-by-side runs through other libraries (``--peers``), in the same bench invocation.

Each peer is a venv, what to install in it, and a driver script that the venv's own
interpreter runs with a JSON options argument on a database of its own (created here,
dropped after): the same bulk insert (10 batches of 5,000) and 20,000-job drains at
c=10/50/200, rates taken from the database as ours are. The drivers print one JSON line.

- ``oban`` 0.7.0 (needs Python >= 3.12): ``/tmp/peer-oban``, ``bench/peer_oban.py``.
- ``pgqueuer`` 1.6.0 with asyncpg: ``/tmp/peer-pgqueuer``, ``bench/peer_pgqueuer.py``.

Venvs are created and installed on first use; a peer that cannot be installed or whose
driver fails is skipped with the reason, and the others still run.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bench.db import BenchDatabase

BASE_PYTHON = Path("/root/.pyenv/versions/3.12.1/bin/python")
HERE = Path(__file__).parent
CONCURRENCY = (10, 50, 200)


@dataclass(frozen=True)
class Peer:
    """Where a peer library lives and how it is driven."""

    key: str
    label: str
    venv: Path
    packages: tuple[str, ...]
    probe: str
    driver: Path


PEERS = (
    Peer(
        "oban",
        "oban 0.7.0",
        Path("/tmp/peer-oban"),
        ("oban==0.7.0",),
        "import oban, psycopg_pool",
        HERE / "peer_oban.py",
    ),
    Peer(
        "pgqueuer",
        "pgqueuer 1.6.0",
        Path("/tmp/peer-pgqueuer"),
        ("pgqueuer==1.6.0", "asyncpg"),
        "import pgqueuer, asyncpg",
        HERE / "peer_pgqueuer.py",
    ),
)


def _ensure_venv(peer: Peer) -> Path | None:
    python = peer.venv / "bin" / "python"
    probe = [str(python), "-c", peer.probe]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    if not BASE_PYTHON.exists():
        return None
    steps = [
        [str(BASE_PYTHON), "-m", "venv", str(peer.venv)],
        [str(peer.venv / "bin" / "pip"), "install", "-q", *peer.packages],
    ]
    for step in steps:
        try:
            if subprocess.run(step, capture_output=True, timeout=600).returncode != 0:
                return None
        except subprocess.TimeoutExpired:
            return None
    return python if subprocess.run(probe, capture_output=True).returncode == 0 else None


def _url(admin_dsn: str, dbname: str) -> str:
    """The admin DSN pointed at ``dbname``, as a URL: asyncpg takes no key=value conninfo."""
    parts = {k: str(v) for k, v in conninfo_to_dict(admin_dsn).items()}
    user = quote(parts.pop("user", ""), safe="")
    password = parts.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    parts.pop("dbname", None)
    # Socket directories and anything else ride in the query string, which both drivers read.
    query = f"?{urlencode(parts)}" if parts else ""
    return f"postgresql://{auth}/{quote(dbname, safe='')}{query}"


def _run_peer(bench: BenchDatabase, peer: Peer, jobs: int) -> dict[str, Any]:
    python = _ensure_venv(peer)
    if python is None:
        print(f"peers: {peer.label} skipped (could not install it in {peer.venv})")
        return {"skipped": "not installable"}
    name = f"{peer.key}_peer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(bench.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        opts = {
            "dsn": _url(bench.admin_dsn, name),
            "batches": 10,
            "count": jobs,
            "concurrency": list(CONCURRENCY),
        }
        done = subprocess.run(
            [str(python), str(peer.driver), json.dumps(opts)], capture_output=True, text=True
        )
        if done.returncode != 0:
            print(f"peers: {peer.label} failed, skipped: {done.stderr.strip()[-300:]}")
            return {"skipped": "failed", "stderr": done.stderr[-2000:]}
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        with psycopg.connect(bench.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _ours(ours: dict[str, Any], key: str, field: str) -> float | None:
    values = [r[field] for r in ours.get(key, []) if r.get(field) is not None]
    return median(values) if values else None


def _rows(ours: dict[str, Any]) -> list[tuple[str, float | None, str, str | None]]:
    """(label, our figure, peer result key, peer field) for each compared scenario."""
    rows: list[tuple[str, float | None, str, str | None]] = [
        ("enqueue_many 5,000/batch", _ours(ours, "bulk", "rate"), "bulk_rate", None)
    ]
    for c in CONCURRENCY:
        rows.append(
            (f"drain c={c}", _ours(ours, f"drain_c{c}", "db_rate"), f"drain_c{c}", "db_rate")
        )
    return rows


def _print_table(ours: dict[str, Any], results: dict[str, Any]) -> None:
    ran = [p for p in PEERS if "skipped" not in results[p.key]]
    if not ran:
        return
    print("peers (PyPI), one run each, same machine and server; ours = median of our runs; jobs/s")
    head = f"  {'scenario':<26} {'ours':>9}"
    for peer in ran:
        head += f" {peer.key:>9} {'ratio':>6}"
    print(head)
    for label, mine, key, field in _rows(ours):
        line = f"  {label:<26} {mine:>9,.0f}" if mine is not None else f"  {label:<26} {'-':>9}"
        failed = []
        for peer in ran:
            found = results[peer.key].get(key)
            theirs = found.get(field) if isinstance(found, dict) and field else found
            if isinstance(found, dict) and not found.get("ok", True):
                failed.append(peer.key)
            if not theirs:
                line += f" {'-':>9} {'':>6}"
                continue
            ratio = f"{mine / theirs:.2f}" if mine is not None else "-"
            line += f" {theirs:>9,.0f} {ratio:>6}"
        if failed:
            line += f"  (check FAILED: {', '.join(failed)})"
        print(line)
    print("  ratio = ours / peer (above 1: we are faster); '-' = not run")


def run(bench: BenchDatabase, *, runs: int, jobs: int, ours: dict[str, Any]) -> dict[str, Any]:
    """Run every peer once and print our/peer ratios for the scenarios both ran."""
    results = {peer.key: _run_peer(bench, peer, jobs) for peer in PEERS}
    _print_table(ours, results)
    return results
