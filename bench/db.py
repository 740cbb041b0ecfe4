"""The benchmark's own database: created on the DATABASE_URL server (else an embedded one),
filled with the schema, dropped at the end; plus server CPU read from /proc."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from oban_py import schema

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def server_dsn() -> str:
    """DATABASE_URL, else the embedded server kept under .pgdata/bench."""
    if url := os.environ.get("DATABASE_URL"):
        return url
    from oban_py import embedded

    return embedded.start(ROOT / ".pgdata" / "bench")


class BenchDatabase:
    """A fresh database with the schema installed; ``drop()`` removes it."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.name = f"oban_bench_{uuid.uuid4().hex[:8]}"
        self.dsn = make_conninfo(admin_dsn, dbname=self.name)

    def create(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
            if os.environ.get("BENCH_NO_FLUSH_WAIT"):
                # A measurement aid, never a setting to run with: on a machine whose disk is
                # shared with other work, waiting for WAL flushes swamps the CPU-side cost a
                # change is meant to move. Commits still flush, a moment later.
                conn.execute(
                    sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(
                        sql.Identifier(self.name)
                    )
                )
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(schema.install_sql().encode())
            conn.execute("CREATE TABLE bench_seen (id bigint PRIMARY KEY)")

    def drop(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )

    def reset(self) -> None:
        """Empty the jobs and the seen-ids table, as a fresh install would have them."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE oban_jobs, bench_seen RESTART IDENTITY")

    def fill(self, queue: str, count: int, worker: str = "Bench.Noop") -> None:
        """Insert ``count`` available jobs in one statement (before any node starts)."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO oban_jobs (queue, worker, args) "
                "SELECT %s, %s, '{}'::jsonb FROM generate_series(1, %s)",
                (queue, worker, count),
            )

    @classmethod
    @contextlib.contextmanager
    def fresh(cls, keep: bool = False) -> Iterator[BenchDatabase]:
        """A new database on the benchmark's server, dropped on exit unless ``keep``."""
        bench_db = cls(server_dsn())
        bench_db.create()
        try:
            yield bench_db
        finally:
            if keep:
                print(f"kept: {bench_db.dsn}")
            else:
                bench_db.drop()

    def one(self, query: str, params: Any = None) -> Any:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(query, params).fetchone()
        return None if row is None else (row[0] if len(row) == 1 else row)

    def is_local(self) -> bool:
        host = str(conninfo_to_dict(self.dsn).get("host") or "localhost")
        return host in ("localhost", "127.0.0.1", "::1") or host.startswith("/")


def proc_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of /proc/<pid>/stat (1-based, after the comm).
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every local postgres process, by pid (empty if the server is remote)."""
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("postgres"):
            seconds = proc_cpu(int(entry.name))
            if seconds is not None:
                cpu[int(entry.name)] = seconds
    return cpu


def backend_pids(conn: psycopg.Connection[Any], dbname: str) -> list[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dbname,),
    ).fetchall()
    return [r[0] for r in rows]


def server_cpu_since(before: dict[int, float], pids: list[int]) -> float:
    """CPU the given backends used since ``before`` (a backend born since counts from 0)."""
    total = 0.0
    for pid in pids:
        now = proc_cpu(pid)
        if now is not None:
            total += now - before.get(pid, 0.0)
    return total
