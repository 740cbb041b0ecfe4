"""The ``oban-py`` console script, run in a subprocess against a real database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import FIXTURES

ROOT = Path(__file__).resolve().parent.parent
OBAN_PY = str(ROOT / ".venv" / "bin" / "oban-py")
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"
SLOW_NODE = ("--shutdown-grace", "30", "--import", "tests.clisupport.workers")


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OBAN_")}
    clean.pop("DATABASE_URL", None)
    return subprocess.run(
        [OBAN_PY, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **(env or {})},
        timeout=60,
    )


def row(dsn: str, job_id: int) -> dict[str, Any] | None:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT row_to_json(j) FROM oban_jobs j WHERE id = %s", (job_id,)
        ).fetchone()
    return found[0] if found else None


def enqueue(dsn: str, *argv: str) -> dict[str, Any]:
    result = run("enqueue", *argv, "--dsn", dsn, "--json")
    assert result.returncode == 0, result.stderr
    job: dict[str, Any] = json.loads(result.stdout)
    return job


# -- jobs --------------------------------------------------------------------------------------


def test_enqueue_writes_what_elixir_insert_writes(dsn: str) -> None:
    elixir = json.loads((FIXTURES / "jobs" / "insert_tags_meta_priority.json").read_text())
    job = enqueue(
        dsn,
        elixir["worker"],
        "--args",
        json.dumps(elixir["args"]),
        "--queue",
        elixir["queue"],
        "--priority",
        str(elixir["priority"]),
        "--max-attempts",
        str(elixir["max_attempts"]),
        "--tags",
        ",".join(elixir["tags"]),
        "--meta",
        json.dumps(elixir["meta"]),
    )
    stored = row(dsn, job["id"])
    assert stored is not None
    for column in ("state", "queue", "worker", "args", "priority", "max_attempts", "tags", "meta"):
        assert stored[column] == elixir[column], column
    assert stored["errors"] == elixir["errors"] == []
    assert stored["attempt"] == elixir["attempt"] == 0


def test_enqueue_with_schedule_in_is_scheduled(dsn: str) -> None:
    job = enqueue(dsn, "My.Worker", "--schedule-in", "3600")
    assert job["state"] == "scheduled"


def test_enqueue_rejects_invalid_args_json_with_exit_2(dsn: str) -> None:
    result = run("enqueue", "My.Worker", "--args", "{not json", "--dsn", dsn)
    assert result.returncode == 2
    assert "--args is not valid JSON" in result.stderr
    result = run("enqueue", "My.Worker", "--args", "[1, 2]", "--dsn", dsn)
    assert result.returncode == 2
    assert "--args must be a JSON object" in result.stderr
    result = run("enqueue", "My.Worker", "--priority", "12", "--dsn", dsn)
    assert result.returncode == 2
    assert "priority" in result.stderr


def test_enqueue_applies_an_importable_workers_options(dsn: str) -> None:
    # Before: queue default, max_attempts 20, priority 0, whatever the worker declared.
    args = json.dumps({"email": "a@example.com", "plan": 2})
    job = enqueue(dsn, "tests.clisupport.workers.Welcome", "--args", args)
    assert (job["worker"], job["queue"], job["max_attempts"], job["priority"]) == (
        "CliSupport.Welcome",
        "mailers",
        3,
        2,
    )
    given = enqueue(dsn, "tests.clisupport.workers.Welcome", "--args", args, "--queue", "vip")
    assert given["queue"] == "vip"


def test_enqueue_checks_typed_args_and_inserts_nothing_when_they_fail(dsn: str) -> None:
    result = run(
        "enqueue", "tests.clisupport.workers.Welcome", "--args", '{"email": 1}', "--dsn", dsn
    )
    assert result.returncode == 2
    assert "invalid args" in result.stderr
    assert "plan" in result.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM oban_jobs").fetchone() == (0,)


def test_enqueue_keeps_wide_integers_exact(dsn: str) -> None:
    job = enqueue(dsn, "My.Worker", "--args", '{"id": 123456789012345678901234567890}')
    assert job["args"] == {"id": 123456789012345678901234567890}
    stored = row(dsn, job["id"])
    assert stored is not None
    assert stored["args"] == {"id": 123456789012345678901234567890}
    listed = run("jobs", "--dsn", dsn, "--json")
    assert '"id":123456789012345678901234567890' in listed.stdout.replace(" ", "")
    shown = run("jobs", "show", str(job["id"]), "--dsn", dsn)
    assert json.loads(shown.stdout)["args"] == {"id": 123456789012345678901234567890}


def test_jobs_lists_filters_and_shows_one(dsn: str) -> None:
    first = enqueue(dsn, "Cli.A", "--queue", "alpha")
    second = enqueue(dsn, "Cli.B", "--queue", "beta")
    listed = run("jobs", "--dsn", dsn)
    assert listed.returncode == 0
    assert "Cli.A" in listed.stdout
    assert "Cli.B" in listed.stdout
    beta = run("jobs", "--queue", "beta", "--json", "--dsn", dsn)
    assert [json.loads(line)["id"] for line in beta.stdout.splitlines()] == [second["id"]]
    worker = run("jobs", "--worker", "Cli.A", "--state", "available", "--json", "--dsn", dsn)
    assert [json.loads(line)["id"] for line in worker.stdout.splitlines()] == [first["id"]]
    shown = run("jobs", "show", str(first["id"]), "--dsn", dsn)
    assert shown.returncode == 0
    assert json.loads(shown.stdout) == row(dsn, first["id"])


def test_jobs_show_unknown_id_exits_6(dsn: str) -> None:
    result = run("jobs", "show", "424242", "--dsn", dsn)
    assert result.returncode == 6
    assert "no job with id 424242" in result.stderr


def test_jobs_rejects_an_unknown_state(dsn: str) -> None:
    result = run("jobs", "--state", "finished", "--dsn", dsn)
    assert result.returncode == 2
    assert "unknown state 'finished'" in result.stderr


def test_cancel_retry_delete_act_on_each_id_and_report_unknown_ones(dsn: str) -> None:
    elixir = json.loads((FIXTURES / "jobs" / "cancelled_scheduled.json").read_text())
    job = enqueue(dsn, "Cli.C", "--schedule-in", "60")
    cancelled = run("cancel", str(job["id"]), "--dsn", dsn)
    assert cancelled.returncode == 0, cancelled.stderr
    stored = row(dsn, job["id"])
    assert stored is not None
    assert stored["state"] == elixir["state"] == "cancelled"
    assert stored["errors"] == elixir["errors"] == []
    again = run("cancel", str(job["id"]), "424242", "--dsn", dsn)
    assert again.returncode == 6
    assert "not cancelled: it is cancelled" in again.stderr
    assert "no job with id 424242" in again.stderr
    retried = run("retry", str(job["id"]), "--dsn", dsn)
    assert retried.returncode == 0
    assert row(dsn, job["id"])["state"] == "available"  # type: ignore[index]
    deleted = run("delete", str(job["id"]), "--dsn", dsn)
    assert deleted.returncode == 0
    assert row(dsn, job["id"]) is None
    assert run("delete", str(job["id"]), "--dsn", dsn).returncode == 6


# -- connection and schema errors ----------------------------------------------------------------


def test_no_dsn_exits_2_and_says_how_to_give_one() -> None:
    result = run("jobs")
    assert result.returncode == 2
    assert "pass --dsn or set OBAN_DSN or DATABASE_URL" in result.stderr


def test_unreachable_database_exits_3() -> None:
    for argv in (["jobs"], ["enqueue", "X.Y"], ["start", "--queues", "a:1"], ["pause", "a"]):
        result = run(*argv, "--dsn", UNREACHABLE)
        assert result.returncode == 3, (argv, result.stderr)
        assert "cannot reach PostgreSQL at 127.0.0.1:1" in result.stderr


def test_missing_schema_exits_5_and_names_the_fix(empty_dsn: str) -> None:
    for argv in (["jobs"], ["start", "--queues", "a:1"]):
        result = run(*argv, "--dsn", empty_dsn)
        assert result.returncode == 5, (argv, result.stderr)
        assert "is not installed" in result.stderr
        assert "oban-py migrate" in result.stderr


def test_dsn_comes_from_the_environment(dsn: str) -> None:
    result = run("jobs", env={"DATABASE_URL": dsn})
    assert result.returncode == 0, result.stderr


# -- start ---------------------------------------------------------------------------------------


def test_start_rejects_a_bad_queue_spec_with_exit_2(dsn: str) -> None:
    result = run("start", "--dsn", dsn, "--queues", "mailers:ten")
    assert result.returncode == 2
    assert "limit of 'mailers' must be a whole number" in result.stderr


def test_start_rejects_an_unknown_event_loop_with_exit_2(dsn: str) -> None:
    result = run("start", "--dsn", dsn, "--queues", "a:1", "--loop", "trio")
    assert result.returncode == 2
    assert "--loop must be auto, uvloop or asyncio, got 'trio'" in result.stderr


def test_start_rejects_a_worker_module_that_does_not_import(dsn: str) -> None:
    result = run("start", "--dsn", dsn, "--queues", "a:1", "--import", "no.such.module")
    assert result.returncode == 2
    assert "cannot import worker module 'no.such.module'" in result.stderr


def wait_for(predicate: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_start_runs_imported_workers_and_stops_gracefully_on_sigterm(dsn: str) -> None:
    quick = enqueue(dsn, "CliSupport.Echo", "--queue", "cli")
    threaded = enqueue(dsn, "CliSupport.EchoSync", "--queue", "cli")
    slow = enqueue(dsn, "CliSupport.Sleep", "--queue", "cli", "--args", '{"ms": 700}')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OBAN_")}
    node = subprocess.Popen(
        [
            OBAN_PY,
            "start",
            "--dsn",
            dsn,
            "--queues",
            "cli:5",
            "--node",
            "cli-test-node",
            "--import",
            "tests.clisupport.workers",
            "--log-format",
            "json",
            "--shutdown-grace",
            "5",
        ],
        cwd=ROOT,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: row(dsn, quick["id"])["state"] == "completed")  # type: ignore[index]
        wait_for(lambda: row(dsn, threaded["id"])["state"] == "completed")  # type: ignore[index]
        wait_for(lambda: row(dsn, slow["id"])["state"] == "executing")  # type: ignore[index]
        # The slow job is mid-run: a graceful stop lets it finish within the grace.
        node.send_signal(signal.SIGTERM)
        _, stderr = node.communicate(timeout=10)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    assert node.returncode == 0, stderr
    assert row(dsn, slow["id"])["state"] == "completed"  # type: ignore[index]
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [e["event"] for e in events]
    assert "node started" in messages
    # uvloop is a dependency on every platform this suite runs on: start uses it by default.
    assert next(e for e in events if e["event"] == "node started")["loop"] == "uvloop"
    assert "stopping gracefully" in messages
    assert messages[-1] == "node stopped"
    # Each node event once, not also as the telemetry event's own line.
    assert "oban.node.start" not in messages
    assert "oban.node.stop" not in messages
    # An idle pool thread left by the sync job is no worker that ignored its cancellation.
    assert not [m for m in messages if "ignored cancellation" in m]
    stops = [e for e in events if e.get("event_name") == "oban.job.stop"]
    assert {e["id"] for e in stops} == {quick["id"], threaded["id"], slow["id"]}


def test_second_signal_stops_at_once_with_exit_1(dsn: str) -> None:
    slow = enqueue(dsn, "CliSupport.Sleep", "--queue", "cli", "--args", '{"ms": 30000}')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OBAN_")}
    node = subprocess.Popen(
        [OBAN_PY, "start", "--dsn", dsn, "--queues", "cli:1", *SLOW_NODE],
        cwd=ROOT,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: row(dsn, slow["id"])["state"] == "executing")  # type: ignore[index]
        node.send_signal(signal.SIGINT)
        time.sleep(0.3)
        node.send_signal(signal.SIGINT)
        _, stderr = node.communicate(timeout=10)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    assert node.returncode == 1, stderr
    assert "second signal: stopping now" in stderr
    # Left executing for the lifeline to rescue, as after any abrupt stop.
    assert row(dsn, slow["id"])["state"] == "executing"  # type: ignore[index]


# -- queues and signals ------------------------------------------------------------------------


def listen(dsn: str, channel: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f'LISTEN "{channel}"')
    return conn


def notifications(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return [json.loads(n.payload) for n in conn.notifies(timeout=1.0, stop_after=1)]


@pytest.mark.parametrize(
    ("argv", "payload"),
    [
        (["pause", "mailers"], {"action": "pause", "ident": "any", "queue": "mailers"}),
        (["resume", "mailers"], {"action": "resume", "ident": "any", "queue": "mailers"}),
        (
            ["scale", "mailers", "--limit", "3", "--node", "web-1"],
            {
                "action": "scale",
                "ident": "Oban.web-1",
                "limit": 3,
                "node": "web-1",
                "queue": "mailers",
            },
        ),
    ],
)
def test_signal_commands_publish_elixir_payloads(
    dsn: str, argv: list[str], payload: dict[str, Any]
) -> None:
    with listen(dsn, "public.oban_signal") as conn:
        result = run(*argv, "--dsn", dsn)
        assert result.returncode == 0, result.stderr
        assert notifications(conn) == [payload]


def test_scale_needs_a_positive_limit(dsn: str) -> None:
    result = run("scale", "mailers", "--limit", "0", "--dsn", dsn)
    assert result.returncode == 2


def test_queues_reports_gossip_check_ins(dsn: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OBAN_")}
    node = subprocess.Popen(
        [OBAN_PY, "start", "--dsn", dsn, "--queues", "gossipy:7", "--node", "gossip-node"],
        cwd=ROOT,
        env=clean,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        checks: list[dict[str, Any]] = []
        while not checks and time.monotonic() < deadline:
            result = run("queues", "--dsn", dsn, "--json", "--wait", "1.5")
            assert result.returncode == 0, result.stderr
            checks = [json.loads(line) for line in result.stdout.splitlines()]
        table = run("queues", "--dsn", dsn, "--wait", "1.5")
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=10)
    assert [(c["node"], c["queue"], c["limit"], c["paused"]) for c in checks] == [
        ("gossip-node", "gossipy", 7, False)
    ]
    assert "gossip-node" in table.stdout
    assert "gossipy" in table.stdout


def test_version_and_help_start_without_the_runtime() -> None:
    # What made every command take a second to start: psycopg, pydantic, structlog and the
    # insert engine imported before the command line was even parsed.
    heavy = ["psycopg", "pydantic", "structlog", "oban_py.client.core", "oban_py.schema"]
    probe = (
        "import sys\n"
        "from oban_py.cli import main\n"
        "for argv in (['oban-py', '--version'], ['oban-py', '--help']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print('loaded:', [m for m in {heavy!r} if m in sys.modules], file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "oban-py 0.1.0 (Oban schema version 14)" in done.stdout
    assert "loaded: []" in done.stderr


def test_the_package_loads_its_public_names_on_first_use() -> None:
    import oban_py
    from oban_py import Job, Oban, Worker

    assert oban_py.Job is Job
    assert Oban.__module__ == "oban_py.node.instance"
    assert issubclass(Worker, object)
    assert "Job" in dir(oban_py)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = oban_py.Nope  # type: ignore[attr-defined]
