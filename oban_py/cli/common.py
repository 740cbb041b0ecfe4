"""What every database command of ``oban-py`` shares: connecting, exit codes, JSON output.

Exit codes extend those of the schema commands (``oban_py.cli.migrations``), whose helpers are
reused so a DSN problem reads the same whichever command hit it:

==  =========================================================================
0   success
1   the operation failed (or a node was stopped by a second signal)
2   bad input: no or malformed DSN, bad queue spec, invalid JSON, bad option
3   PostgreSQL unreachable (or no such database)
4   authentication refused
5   Oban schema not installed or too old
6   no job with a given id
==  =========================================================================
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from oban_py.cli import migrations as schema_cli

if TYPE_CHECKING:
    from oban_py.client.core import Client
    from oban_py.job.model import Job

# psycopg, pydantic and the client are imported by the functions that need them: a command
# that never reaches the database (``--help``, ``--version``) starts without them.

EXIT_FAILED = schema_cli.EXIT_FAILED
EXIT_USAGE = schema_cli.EXIT_NO_DSN
EXIT_UNREACHABLE = schema_cli.EXIT_UNREACHABLE
EXIT_AUTH = schema_cli.EXIT_AUTH
EXIT_NOT_INSTALLED = schema_cli.EXIT_NOT_INSTALLED
EXIT_NOT_FOUND = 6

T = TypeVar("T")


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned ``typer.Exit``."""
    return schema_cli._fail(message, code)


def require_dsn(dsn: str | None) -> str:
    import psycopg

    if not dsn:
        raise fail("no database given: pass --dsn or set OBAN_DSN or DATABASE_URL", EXIT_USAGE)
    try:
        schema_cli._describe(dsn)
    except psycopg.ProgrammingError as error:
        raise fail(f"malformed DSN: {error}", EXIT_USAGE) from None
    return dsn


async def preflight(dsn: str, prefix: str) -> None:
    """Connect once and check the schema, turning each failure into its exit code."""
    import psycopg

    from oban_py import schema
    from oban_py.job.errors import SchemaError

    where = schema_cli._describe(dsn)
    try:
        conn = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=schema_cli.CONNECT_TIMEOUT
        )
    except psycopg.OperationalError as error:
        detail = " ".join(str(error).split()) or repr(error)
        if schema_cli._is_auth_failure(error):
            raise fail(f"authentication to {where} failed: {detail}", EXIT_AUTH) from None
        if 'database "' in detail and "does not exist" in detail:
            raise fail(f"no such database at {where}: {detail}", EXIT_UNREACHABLE) from None
        raise fail(f"cannot reach PostgreSQL at {where}: {detail}", EXIT_UNREACHABLE) from None
    async with conn:
        try:
            await schema.check(conn, prefix, dsn)
        except SchemaError as error:
            raise fail(str(error), EXIT_NOT_INSTALLED) from None


def with_client(dsn: str | None, prefix: str, action: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``action`` with a ``Client`` on a reachable database holding the schema."""
    import psycopg

    from oban_py.client.core import Client
    from oban_py.config import Config

    checked = require_dsn(dsn)

    async def go() -> T:
        await preflight(checked, prefix)
        client = Client(config=Config(dsn=checked, prefix=prefix, name="oban-py-cli", pool_size=2))
        try:
            async with client:
                return await action(client)
        except psycopg.Error as error:
            raise fail(f"database error: {' '.join(str(error).split())}", EXIT_FAILED) from None

    return asyncio.run(go())


def parse_json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """A JSON object given on the command line, or exit 2 saying what is wrong with it."""
    if text is None:
        return None
    from oban_py.job import jsonb

    try:
        value = jsonb.loads(text)
    except ValueError as error:
        raise fail(f"{option} is not valid JSON ({error}): {text!r}", EXIT_USAGE) from None
    if not isinstance(value, dict):
        raise fail(f"{option} must be a JSON object like '{{\"id\": 1}}', got {text!r}", EXIT_USAGE)
    return value


def job_json(job: Job, extra: dict[str, Any] | None = None) -> str:
    """A job as ``row_to_json`` would print it (naive UTC ISO timestamps), plus ``extra``."""
    import orjson

    from oban_py.job import jsonb

    row = job.to_row()
    if extra:
        row.update(extra)
    return jsonb.dumps(row, option=orjson.OPT_INDENT_2).decode()


def job_line(job: Job) -> str:
    from oban_py.job import jsonb

    return jsonb.dumps_str(job.to_row())
