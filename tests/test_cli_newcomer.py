"""What a newcomer meets first on the command line (issue 14): one queue syntax, pasteable fix
commands, help text as written, version/config/dry-run, stats; all through the console script."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from test_cli import OBAN_PY, ROOT, enqueue, run, wait_for

from oban_py.schema._dsn import mask_password, shell_dsn

# -- queue syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["mailers=10", "mailers 10", "mailers:10,reports=5", "a b:1"])
def test_start_refuses_a_queue_spec_that_is_not_name_colon_limit(dsn: str, spec: str) -> None:
    result = run("start", "--dsn", dsn, "--queues", spec)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: queues: ")
    assert "is not NAME:LIMIT" in result.stderr


def test_oban_queues_variable_uses_the_same_syntax(dsn: str) -> None:
    result = run("start", "--dry-run", env={"OBAN_DSN": dsn, "OBAN_QUEUES": "mailers=10"})
    assert result.returncode == 2
    assert "did you mean 'mailers:10'" in result.stderr


# -- the fix command of a missing or old schema --------------------------------------------------


def test_missing_schema_hint_prints_the_users_dsn_with_the_password_masked(
    empty_dsn: str,
) -> None:
    secret = make_conninfo(empty_dsn, password="hunter2", connect_timeout="7")
    for argv in (["jobs"], ["schema-version"], ["start", "--queues", "a:1"]):
        result = run(*argv, "--dsn", secret)
        assert result.returncode == 5, (argv, result.stderr)
        assert result.stderr.startswith("error: The Oban schema in prefix 'public'"), argv
        assert "hunter2" not in result.stderr
        # psycopg's parsed conninfo would add libpq defaults the user never wrote.
        assert "sslcertmode" not in result.stderr
        assert "password=****" in result.stderr
    # The printed command, with the password typed back in, is the fix.
    command = result.stderr.split("Run: ", 1)[1].strip()
    argv = [a.replace("****", "hunter2") for a in shlex.split(command)]
    assert argv[:2] == ["oban-py", "migrate"]
    assert run(*argv[1:]).returncode == 0
    assert run("schema-version", "--dsn", secret).returncode == 0


def test_hint_names_the_variable_the_dsn_came_from(empty_dsn: str) -> None:
    result = run("jobs", env={"DATABASE_URL": empty_dsn})
    assert result.returncode == 5
    assert 'Run: oban-py migrate --dsn "$DATABASE_URL" --prefix public' in result.stderr
    older = run("schema-version", env={"OBAN_DSN": empty_dsn})
    assert '--dsn "$OBAN_DSN"' in older.stderr


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "postgresql://ada:s3cr%40t@db:5432/app?sslmode=require",
            "postgresql://ada:****@db:5432/app?sslmode=require",
        ),
        (
            "postgresql://ada@db/app?password=x&sslmode=a",
            "postgresql://ada@db/app?password=****&sslmode=a",
        ),
        ("postgresql://a:b@h1:1,h2:2/app", "postgresql://a:****@h1:1,h2:2/app"),
        ("postgresql:///app?password=x", "postgresql:///app?password=****"),
        ("postgresql:///app", "postgresql:///app"),
        ("host=db password=secret user=ada", "host=db password=**** user=ada"),
        ("host=db password = 'a \\' b' user=ada", "host=db password = **** user=ada"),
        ("host=db user=ada", "host=db user=ada"),
    ],
)
def test_mask_password_hides_every_spelling_of_a_password(dsn: str, shown: str) -> None:
    assert mask_password(dsn) == shown


def test_shell_dsn_without_a_dsn_points_at_database_url() -> None:
    assert shell_dsn(None) == '"$DATABASE_URL"'
    assert shell_dsn("host=x password=y") == shlex.quote("host=x password=****")


# -- help text -----------------------------------------------------------------------------------


def test_start_help_shows_the_pyproject_table_name() -> None:
    result = run("start", "--help")
    assert result.returncode == 0
    assert "[tool.oban]" in result.stdout


# -- --version, --config, --dry-run ----------------------------------------------------------


def test_version_prints_the_package_and_schema_versions() -> None:
    from oban_py import __version__

    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (
        0,
        f"oban-py {__version__} (Oban schema version 14)",
    )


def test_dry_run_checks_everything_and_prints_the_config_without_starting(dsn: str) -> None:
    secret = make_conninfo(dsn, password="hunter2")
    result = run(
        "start",
        "--dsn",
        secret,
        "--queues",
        "mailers:3",
        "--import",
        "tests.clisupport.workers",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["queues"] == {"mailers": {"limit": 3, "paused": False}}
    assert shown["shutdown_grace"] == 15.0
    assert "hunter2" not in result.stdout + result.stderr
    assert "password=****" in shown["dsn"]
    assert "would run mailers:3" in result.stderr
    assert "CliSupport.Echo" in result.stderr
    with psycopg.connect(dsn) as conn:
        # Nothing ran: no leadership was taken, no producer beat.
        assert conn.execute("SELECT count(*) FROM oban_peers").fetchone() == (0,)


def test_dry_run_still_fails_on_a_missing_schema(empty_dsn: str) -> None:
    result = run("start", "--dsn", empty_dsn, "--dry-run")
    assert result.returncode == 5


def test_config_file_replaces_oban_toml(dsn: str, tmp_path: Path) -> None:
    settings = tmp_path / "node.toml"
    settings.write_text(f'dsn = "{dsn}"\nqueues = "alpha:2,beta"\nshutdown_grace = 3\n')
    result = run("start", "--config", str(settings), "--dry-run")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["queues"] == {
        "alpha": {"limit": 2, "paused": False},
        "beta": {"limit": 10, "paused": False},
    }
    assert shown["shutdown_grace"] == 3.0
    # Arguments still win over the file.
    override = run("start", "--config", str(settings), "--queues", "gamma:1", "--dry-run")
    assert list(json.loads(override.stdout)["queues"]) == ["gamma"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("queues = [", "not valid TOML"),
        ('queues = "a=1"', "is not NAME:LIMIT"),
        ("poll_interval = -1", "poll_interval: Input should be greater than 0"),
        ("\x00 = 1", "not valid TOML"),
    ],
)
def test_a_bad_config_file_is_named_in_the_error(
    tmp_path: Path, content: str, message: str
) -> None:
    settings = tmp_path / "oban.toml"
    settings.write_text(content)
    for argv in (["start", "--config", str(settings)], ["start"]):
        result = subprocess.run(
            [OBAN_PY, *argv, "--dsn", "postgresql://nowhere.invalid/x", "--dry-run"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("OBAN_")},
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert str(settings) in result.stderr


def test_a_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("start", "--config", str(tmp_path / "nope.toml"), "--dry-run")
    assert result.returncode == 2
    assert "nope.toml" in result.stderr


# -- stats -------------------------------------------------------------------------------------


def test_stats_counts_jobs_per_queue_and_state(dsn: str) -> None:
    for queue in ("mailers", "mailers", "mailers", "reports"):
        enqueue(dsn, "MyApp.Worker", "--queue", queue)
    enqueue(dsn, "MyApp.Worker", "--queue", "reports", "--schedule-in", "600")
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE oban_jobs SET state = 'completed', completed_at = now()"
            " WHERE id = (SELECT min(id) FROM oban_jobs)"
        )
    result = run("stats", "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["QUEUE", "AVAILABLE", "SCHEDULED", "COMPLETED"]
    assert lines[1:] == [
        ["mailers", "2", "0", "1"],
        ["reports", "1", "1", "0"],
        ["(all)", "3", "1", "1"],
    ]
    as_json = [
        json.loads(line) for line in run("stats", "--dsn", dsn, "--json").stdout.splitlines()
    ]
    assert as_json[0] == {
        "queue": "mailers",
        "available": 2,
        "suspended": 0,
        "scheduled": 0,
        "executing": 0,
        "retryable": 0,
        "completed": 1,
        "discarded": 0,
        "cancelled": 0,
    }


def test_stats_on_an_empty_table_says_so(dsn: str) -> None:
    result = run("stats", "--dsn", dsn)
    assert (result.returncode, result.stdout) == (0, "")
    assert "No jobs in prefix 'public'" in result.stderr


# -- hints where a newcomer is left guessing -------------------------------------------------------


def test_jobs_with_a_short_worker_name_suggests_the_full_one(dsn: str) -> None:
    enqueue(dsn, "MyApp.Workers.EmailWorker")
    enqueue(dsn, "Other.EmailWorker")
    enqueue(dsn, "MyApp.Workers.NotEmailWorker")
    result = run("jobs", "--dsn", dsn, "--worker", "EmailWorker")
    assert result.returncode == 0
    assert "No jobs match." in result.stderr
    assert "did you mean MyApp.Workers.EmailWorker or Other.EmailWorker?" in result.stderr
    # A name with LIKE wildcards is taken literally.
    assert "did you mean" not in run("jobs", "--dsn", dsn, "--worker", "%Worker").stderr


def test_a_node_started_with_no_queues_warns(dsn: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OBAN_")}
    clean.pop("DATABASE_URL", None)
    node = subprocess.Popen(
        [OBAN_PY, "start", "--dsn", dsn, "--log-format", "json"],
        cwd=ROOT,
        env={**clean, "OBAN_QUEUES": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM oban_peers").fetchone() != (0,))
        node.send_signal(signal.SIGTERM)
        _, stderr = node.communicate(timeout=20)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    warning = next(e for e in events if e["event"].startswith("node started with no queues"))
    assert warning["level"] == "warning"
    assert "OBAN_QUEUES" in warning["event"]


def test_queues_hearing_nothing_names_a_blocked_loop_as_a_cause(dsn: str) -> None:
    result = run("queues", "--dsn", dsn, "--wait", "0.2")
    assert result.returncode == 0
    assert "No check-ins heard in 0.2 s" in result.stderr
    assert "event loop is blocked" in result.stderr


async def test_a_node_on_a_missing_schema_names_the_fix_without_the_password(
    empty_dsn: str,
) -> None:
    from oban_py import Oban, SchemaError

    oban = Oban(dsn=make_conninfo(empty_dsn, password="hunter2"), peer=False)
    with pytest.raises(SchemaError) as raised:
        await oban.start()
    await oban.stop()
    message = str(raised.value)
    assert "hunter2" not in message
    assert "password=****" in message
    assert "Run: oban-py migrate --dsn " in message


def test_a_misspelt_oban_variable_is_named_with_the_setting_it_may_mean(dsn: str) -> None:
    result = run(
        "start",
        "--dsn",
        dsn,
        "--dry-run",
        env={"OBAN_QUEUE": "mailers:1", "OBAN_PRUNER__MAX_AGE": "60", "OBAN_TEST_DSN": dsn},
    )
    assert result.returncode == 0, result.stderr
    assert "OBAN_QUEUE is not a setting and is ignored; did you mean OBAN_QUEUES?" in result.stderr
    assert "OBAN_PRUNER" not in result.stderr
    assert "OBAN_TEST_DSN" not in result.stderr
    assert "would run no queues" in result.stderr


def test_dry_run_masks_the_password_of_notifier_dsn(dsn: str) -> None:
    result = run(
        "start",
        "--dsn",
        dsn,
        "--dry-run",
        env={"OBAN_NOTIFIER_DSN": make_conninfo(dsn, password="swordfish")},
    )
    assert result.returncode == 0, result.stderr
    assert "swordfish" not in result.stdout + result.stderr
    assert "password=****" in json.loads(result.stdout)["notifier_dsn"]
