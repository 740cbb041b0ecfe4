"""``oban-py demo`` through the console script: every attempt and outcome, then a summary."""

from __future__ import annotations

from test_cli import run


def test_demo_prints_every_attempt_and_what_became_of_each_job(empty_dsn: str) -> None:
    result = run("demo", "--dsn", empty_dsn)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    attempts, summary = out.split("what became of the 5 jobs", 1)
    # The retry is visible: the failed first attempt, then the second.
    assert "Demo.Flaky" in attempts
    assert "attempt 1: failed (RuntimeError: flaky on purpose); retryable" in attempts
    assert "attempt 2: completed" in attempts.split("flaky on purpose", 1)[1]
    assert "attempt 1: snoozed for 1 s; scheduled, to run again" in attempts
    assert "attempt 1: cancelled (not needed any more)" in attempts
    assert 'attempt 1: completed, recorded {"sum":6}' in attempts
    assert "completed, returned 'hello Elixir'" in attempts
    lines = {line.split()[0]: line for line in summary.splitlines()[1:6]}
    assert "completed after 2 attempts; attempt 1 failed: ** (RuntimeError)" in lines["Demo.Flaky"]
    assert "snoozed 1x" in lines["Demo.Sleepy"]
    assert "recorded value {'sum': 6} in meta.return" in lines["Demo.Adder"]
    assert "cancelled after 1 attempt" in lines["Demo.Quitter"]
    assert "oban-py stats --dsn" in summary
    assert "oban-py web --dsn" in summary
    # The DSN is printed as given (no password here), never psycopg's expanded conninfo.
    assert "sslcertmode" not in out


def test_demo_on_an_unreachable_database_is_one_error_line() -> None:
    result = run("demo", "--dsn", "postgresql://ada:hunter2@127.0.0.1:1/nowhere")
    assert result.returncode == 3
    assert result.stderr.startswith("error: cannot use the database at postgresql://ada:****@")
    assert "hunter2" not in result.stdout + result.stderr
