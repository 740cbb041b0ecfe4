"""The schema commands of ``oban-py``: install, migrate, uninstall, schema-version.

They are registered on the main app by :func:`register`, so ``oban_py/cli.py`` stays small.
Exit codes: 0 success, 1 the migration itself failed, 2 no or malformed DSN, 3 server
unreachable, 4 authentication refused, 5 schema not installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from oban_py.versions import CURRENT_VERSION, INITIAL_VERSION

if TYPE_CHECKING:
    import psycopg

# psycopg and oban_py.schema are imported by the commands that reach the database: a command
# that does not (``--help``, ``--version``) starts without them.

EXIT_FAILED = 1
EXIT_NO_DSN = 2
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_NOT_INSTALLED = 5

CONNECT_TIMEOUT = 5
# SQLSTATE class 28: invalid authorization specification (bad password, unknown role, pg_hba).
AUTH_SQLSTATES = {"28000", "28P01"}
AUTH_MESSAGES = (
    "authentication failed",
    "no pg_hba.conf entry",
    "no password supplied",
    "password is required",
)

Dsn = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        envvar=["OBAN_DSN", "DATABASE_URL"],
        show_envvar=True,
        help="PostgreSQL connection string (default: $OBAN_DSN, then $DATABASE_URL).",
    ),
]
Prefix = Annotated[str, typer.Option("--prefix", help="Schema holding the Oban tables.")]

T = TypeVar("T")


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _describe(dsn: str) -> str:
    """Where a DSN points, without its password."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


def _is_auth_failure(error: psycopg.OperationalError) -> bool:
    if error.sqlstate in AUTH_SQLSTATES:
        return True
    # Errors raised while connecting often carry no SQLSTATE: fall back on libpq's wording.
    text = str(error).lower()
    unknown_role = 'role "' in text and "does not exist" in text
    return unknown_role or any(marker in text for marker in AUTH_MESSAGES)


def _run(dsn: str | None, action: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    import psycopg

    if not dsn:
        raise _fail("no database given: pass --dsn or set OBAN_DSN or DATABASE_URL", EXIT_NO_DSN)
    try:
        where = _describe(dsn)
    except psycopg.ProgrammingError as error:
        raise _fail(f"malformed DSN: {error}", EXIT_NO_DSN) from None

    async def go() -> T:
        try:
            conn = await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT
            )
        except psycopg.OperationalError as error:
            detail = " ".join(str(error).split()) or repr(error)
            if _is_auth_failure(error):
                raise _fail(f"authentication to {where} failed: {detail}", EXIT_AUTH) from None
            if 'database "' in detail and "does not exist" in detail:
                raise _fail(f"no such database at {where}: {detail}", EXIT_UNREACHABLE) from None
            raise _fail(f"cannot reach PostgreSQL at {where}: {detail}", EXIT_UNREACHABLE) from None
        async with conn:
            try:
                return await action(conn)
            except psycopg.Error as error:
                raise _fail(
                    f"schema change failed, nothing was applied: {error}", EXIT_FAILED
                ) from None

    return asyncio.run(go())


def install(dsn: Dsn = None, prefix: Prefix = "public") -> None:
    """Install the Oban schema (Elixir migration version 14) or upgrade it to that version."""
    from oban_py import schema

    before, after = _run(dsn, lambda conn: schema.install(conn, prefix))
    if before == after:
        typer.echo(f"Oban schema in prefix {prefix!r} is already at version {after}.")
    else:
        typer.echo(f"Installed Oban schema version {after} in prefix {prefix!r} (was {before}).")


def migrate(
    dsn: Dsn = None,
    prefix: Prefix = "public",
    version: Annotated[
        int,
        typer.Option(
            "--version",
            min=INITIAL_VERSION,
            max=CURRENT_VERSION,
            help="Target version; lower than the installed one migrates down.",
        ),
    ] = CURRENT_VERSION,
) -> None:
    """Migrate the Oban schema up or down to a version (default: the current one, 14)."""
    from oban_py import schema

    before, after = _run(dsn, lambda conn: schema.migrate(conn, prefix, version))
    if before == after:
        typer.echo(f"Oban schema in prefix {prefix!r} is already at version {after}.")
    else:
        typer.echo(f"Migrated Oban schema in prefix {prefix!r} from version {before} to {after}.")


def uninstall(
    dsn: Dsn = None,
    prefix: Prefix = "public",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Drop every Oban table, type and function in the prefix, with all jobs in it."""
    if not yes:
        typer.confirm(f"Drop the Oban schema and all jobs in prefix {prefix!r}?", abort=True)
    from oban_py import schema

    _run(dsn, lambda conn: schema.uninstall(conn, prefix))
    typer.echo(f"Uninstalled the Oban schema from prefix {prefix!r}.")


def schema_version(dsn: Dsn = None, prefix: Prefix = "public") -> None:
    """Print the installed Oban schema version; exit 5 with the fix when it is missing or old."""
    from oban_py import schema

    found = _run(dsn, lambda conn: schema.migrated_version(conn, prefix))
    typer.echo(str(found))
    problem = schema.schema_problem(found, prefix, dsn)
    if problem is not None:
        raise _fail(problem, EXIT_NOT_INSTALLED)


def register(app: typer.Typer) -> None:
    """Add the schema commands to ``app``."""
    app.command("install")(install)
    app.command("migrate")(migrate)
    app.command("uninstall")(uninstall)
    app.command("schema-version")(schema_version)
