"""The schema commands, run through the installed ``oban-py`` console script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest
from conftest import ROOT
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from oban_py.cli.migrations import EXIT_AUTH, EXIT_NO_DSN, EXIT_NOT_INSTALLED, EXIT_UNREACHABLE

OBAN_PY = ROOT / ".venv" / "bin" / "oban-py"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("OBAN_DSN", "DATABASE_URL")}
    return subprocess.run(
        [str(OBAN_PY), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(autouse=True)
def _console_script() -> None:
    assert Path(OBAN_PY).exists(), "the package must be installed in .venv"


def test_install_then_schema_version_then_uninstall(empty_dsn: str) -> None:
    installed = run("install", "--dsn", empty_dsn)
    assert installed.returncode == 0, installed.stderr
    assert "Installed Oban schema version 14 in prefix 'public' (was 0)" in installed.stdout

    again = run("install", "--dsn", empty_dsn)
    assert again.returncode == 0
    assert "already at version 14" in again.stdout

    version = run("schema-version", "--dsn", empty_dsn)
    assert (version.returncode, version.stdout.strip()) == (0, "14")

    removed = run("uninstall", "--dsn", empty_dsn, "--yes")
    assert removed.returncode == 0, removed.stderr
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.oban_jobs')").fetchone() == (None,)


def test_dsn_comes_from_oban_dsn_then_database_url(empty_dsn: str) -> None:
    assert run("install", env={"DATABASE_URL": empty_dsn}).returncode == 0
    bad = make_conninfo(empty_dsn, port="1")
    # OBAN_DSN wins over DATABASE_URL.
    shadowed = run("schema-version", env={"OBAN_DSN": bad, "DATABASE_URL": empty_dsn})
    assert shadowed.returncode == EXIT_UNREACHABLE


def test_migrate_down_and_up_with_prefix(empty_dsn: str) -> None:
    assert run("install", "--dsn", empty_dsn, "--prefix", "My-Schema").returncode == 0
    down = run("migrate", "--dsn", empty_dsn, "--prefix", "My-Schema", "--version", "12")
    assert down.returncode == 0, down.stderr
    assert "from version 14 to 12" in down.stdout

    outdated = run("schema-version", "--dsn", empty_dsn, "--prefix", "My-Schema")
    assert outdated.stdout.strip() == "12"
    assert outdated.returncode == EXIT_NOT_INSTALLED
    assert "error: The Oban schema in prefix 'My-Schema' is at version 12" in outdated.stderr

    up = run("migrate", "--dsn", empty_dsn, "--prefix", "My-Schema")
    assert "from version 12 to 14" in up.stdout
    assert run("schema-version", "--dsn", empty_dsn).returncode == EXIT_NOT_INSTALLED


def test_migrate_rejects_version_out_of_range(empty_dsn: str) -> None:
    result = run("migrate", "--dsn", empty_dsn, "--version", "15")
    assert result.returncode == 2
    assert "less than or equal to 14" in " ".join(result.stderr.split())


def test_missing_schema_prints_zero_and_not_installed(empty_dsn: str) -> None:
    result = run("schema-version", "--dsn", empty_dsn)
    assert result.returncode == EXIT_NOT_INSTALLED
    assert result.stdout.strip() == "0"
    assert "error: The Oban schema in prefix 'public' is not installed" in result.stderr


def test_no_dsn_is_a_usage_error() -> None:
    result = run("install")
    assert result.returncode == EXIT_NO_DSN
    assert "pass --dsn or set OBAN_DSN or DATABASE_URL" in result.stderr


def test_malformed_dsn_is_a_usage_error() -> None:
    result = run("schema-version", "--dsn", "this is not a dsn")
    assert result.returncode == EXIT_NO_DSN
    assert "malformed DSN" in result.stderr


def test_unknown_host_is_reported_unreachable() -> None:
    result = run("install", "--dsn", "postgresql://postgres@nonexistent.invalid:5432/x")
    assert result.returncode == EXIT_UNREACHABLE
    assert "cannot reach PostgreSQL at nonexistent.invalid:5432/x" in result.stderr


def test_closed_port_is_reported_unreachable(empty_dsn: str) -> None:
    result = run("install", "--dsn", make_conninfo(empty_dsn, port="1"))
    assert result.returncode == EXIT_UNREACHABLE
    assert "cannot reach PostgreSQL" in result.stderr


def test_unknown_role_is_reported_as_authentication_failure(empty_dsn: str) -> None:
    result = run("install", "--dsn", make_conninfo(empty_dsn, user="no_such_role_oban"))
    assert result.returncode == EXIT_AUTH
    assert "authentication to" in result.stderr


def test_error_messages_never_echo_the_password(empty_dsn: str) -> None:
    dsn = make_conninfo(empty_dsn, port="1", password="s3cret-pw")
    assert conninfo_to_dict(dsn)["password"] == "s3cret-pw"
    result = run("install", "--dsn", dsn)
    assert "s3cret-pw" not in result.stderr + result.stdout
