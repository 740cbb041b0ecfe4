"""The example shop (docs/examples/django) as its users run it: Django's test runner,
pytest-django, and ``manage.py oban start`` in processes of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import ROOT, RUN_ID, drop_database, dsn_for

EXAMPLE = ROOT / "docs" / "examples" / "django"


@pytest.fixture
def shop(server_dsn: str) -> Iterator[tuple[dict[str, str], str]]:
    """The environment the example runs in, and the database name its settings use."""
    name = f"shop_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    env.update(DATABASE_URL=server_dsn, SHOP_DB_NAME=name)
    yield env, name
    for leftover in (name, f"test_{name}"):
        drop_database(server_dsn, leftover)


def _exists(server_dsn: str, name: str) -> bool:
    with psycopg.connect(server_dsn) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
    return found is not None


def _run(env: dict[str, str], *argv: str, cwd: Path = EXAMPLE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_djangos_test_runner_passes_and_exits_0(
    shop: tuple[dict[str, str], str], server_dsn: str
) -> None:
    env, name = shop
    done = _run(env, "manage.py", "test", "orders", "--noinput", "-v", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Ran 9 tests" in done.stderr
    assert "\nOK" in done.stderr
    # Nothing held the test database open: the runner could drop it.
    assert not _exists(server_dsn, f"test_{name}")


def test_pytest_django_passes(shop: tuple[dict[str, str], str]) -> None:
    env, _ = shop
    done = _run(env, "-m", "pytest", "-q", "-p", "no:randomly")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "6 passed" in done.stdout


def test_oban_start_works_jobs_and_a_sigterm_lets_the_running_one_finish(
    shop: tuple[dict[str, str], str], server_dsn: str
) -> None:
    env, name = shop
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrated = _run(env, "manage.py", "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    dsn = dsn_for(server_dsn, name)
    with psycopg.connect(dsn) as conn:
        order_id = conn.execute(
            "INSERT INTO orders_order (item, status, times_processed, notified)"
            " VALUES ('crate', 'new', 0, false) RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
    for worker, args, queue in (
        ("Shop.ProcessOrder", f'{{"order_id": {order_id}}}', "orders"),
        ("Shop.NotifyCustomer", f'{{"order_id": {order_id}}}', "mail"),
        ("Shop.PackLargeOrder", f'{{"order_id": {order_id}, "seconds": 3}}', "orders"),
    ):
        enqueued = _run(env, "manage.py", "oban", "enqueue", worker, "--args", args, "-q", queue)
        assert enqueued.returncode == 0, enqueued.stderr

    node = subprocess.Popen(
        [sys.executable, "manage.py", "oban", "start", "--queues", "orders:2,mail:1"],
        cwd=EXAMPLE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        with psycopg.connect(dsn, autocommit=True) as conn:
            while (
                conn.execute(
                    "SELECT 1 FROM oban_jobs WHERE worker = 'Shop.PackLargeOrder'"
                    " AND state = 'executing'"
                ).fetchone()
                is None
            ):
                assert time.monotonic() < deadline, "the long job never started"
                time.sleep(0.1)
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=60)
    finally:
        if node.poll() is None:
            node.kill()
    assert node.returncode == 0, err[-3000:]
    with psycopg.connect(dsn) as conn:
        states = dict(conn.execute("SELECT worker, state::text FROM oban_jobs").fetchall())
        order = conn.execute(
            "SELECT status, times_processed, notified FROM orders_order WHERE id = %s", [order_id]
        ).fetchone()
    # The long job finished within the shutdown grace and was recorded once, as completed.
    assert set(states.values()) == {"completed"}
    assert len(states) == 3
    assert order == ("packed", 2, True)
    # Job events went through Django's LOGGING (the shop's console handler, on stderr).
    assert "job stopped" in err
    assert "Shop.PackLargeOrder" in err
    assert "loop=uvloop" in err
    # Each node event once: "node started", not also the telemetry event's own line.
    assert err.count("node started") == 1
    assert err.count("node stopped") == 1
    assert "oban.node.start" not in err
    assert "Traceback" not in err
    # No thread outlived the node (the async job's ORM thread ended with the job).
    assert "ignored cancellation" not in err


def test_a_sigterm_waits_past_the_grace_for_a_sync_job(
    shop: tuple[dict[str, str], str], server_dsn: str
) -> None:
    """A thread cannot be stopped: the first SIGTERM cancels async jobs after the grace, but
    waits for a sync one to end and records its real outcome (what docs/integrations.md says)."""
    env, name = shop
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    assert _run(env, "manage.py", "migrate", "--noinput").returncode == 0
    dsn = dsn_for(server_dsn, name)
    with psycopg.connect(dsn) as conn:
        order_id = conn.execute(
            "INSERT INTO orders_order (item, status, times_processed, notified)"
            " VALUES ('piano', 'new', 0, false) RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
    args = f'{{"order_id": {order_id}, "seconds": 2}}'
    enqueued = _run(
        env, "manage.py", "oban", "enqueue", "Shop.PackLargeOrder", "--args", args, "-q", "orders"
    )
    assert enqueued.returncode == 0, enqueued.stderr
    node = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "oban",
            "start",
            "--queues",
            "orders:1",
            "--shutdown-grace=0.2",
        ],
        cwd=EXAMPLE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not conn.execute("SELECT 1 FROM oban_jobs WHERE state = 'executing'").fetchone():
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.05)
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=60)
    finally:
        if node.poll() is None:
            node.kill()
    assert node.returncode == 0, err[-3000:]
    with psycopg.connect(dsn) as conn:
        [(state, attempt)] = conn.execute("SELECT state::text, attempt FROM oban_jobs").fetchall()
        status = conn.execute("SELECT status FROM orders_order WHERE id = %s", [order_id])
        assert status.fetchone() == ("packed",)
    # Not cancelled at the grace nor released for another node: finished and recorded once.
    assert (state, attempt) == ("completed", 1)
