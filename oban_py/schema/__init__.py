"""The Oban schema: Elixir Oban's Postgres migrations V01..V14, replayed from Python.

Each ``vNN`` module holds the ``up`` and ``down`` DDL of one Elixir migration version, with the
same end state as Oban 2.23.1 (``compat_fixtures/schema_versions`` proves every step). DDL lives
in these modules rather than in ``oban_py/sql/``: it is composed per version and per prefix, and
the prefix is always bound as a quoted identifier (or a string literal where it is a value).

The installed version is recorded where Elixir keeps it, as the comment on ``oban_jobs``
(``COMMENT ON TABLE <prefix>.oban_jobs IS '14'``), so Elixir and Python agree on what is
installed and either side can run the next migration.

Besides Elixir's objects, two tables of ours are created (additive, never read by Elixir, not
tied to the version comment): :data:`HEARTBEATS_TABLE`, where producers of Python nodes record
their liveness so the lifeline can rescue jobs of a dead producer quickly, and
:data:`FLOW_STARTS_TABLE`, the sliding log of job starts that rate limits count
(``oban_py/flow``), and :data:`QUEUES_TABLE`, queue settings persisted for the cluster
(``oban_py/client/persisted.py``).
"""

from __future__ import annotations

import shlex
from types import ModuleType
from typing import Any

import psycopg
from psycopg import sql

from oban_py.job.errors import SchemaError
from oban_py.schema import v01, v02, v03, v04, v05, v06, v07, v08, v09, v10, v11, v12, v13, v14
from oban_py.schema._ddl import DEFAULT_PREFIX, Statement, ddl
from oban_py.schema._dsn import shell_dsn
from oban_py.versions import CURRENT_VERSION, INITIAL_VERSION

__all__ = [
    "CURRENT_VERSION",
    "FLOW_STARTS_TABLE",
    "HEARTBEATS_TABLE",
    "INITIAL_VERSION",
    "QUEUES_TABLE",
    "SchemaError",
    "check",
    "install",
    "install_sql",
    "migrate",
    "migrated_version",
    "uninstall",
]

HEARTBEATS_TABLE = "oban_py_heartbeats"
FLOW_STARTS_TABLE = "oban_py_flow_starts"
QUEUES_TABLE = "oban_py_queues"

VERSIONS: dict[int, ModuleType] = {
    module.VERSION: module
    for module in (v01, v02, v03, v04, v05, v06, v07, v08, v09, v10, v11, v12, v13, v14)
}


def _validate(version: int, low: int) -> None:
    if not low <= version <= CURRENT_VERSION:
        raise ValueError(f"version must be between {low} and {CURRENT_VERSION}, got {version}")


def _record_version(prefix: str, version: int) -> Statement:
    # The version is a literal in a COMMENT, which takes no parameters.
    return ddl(
        "COMMENT ON TABLE {prefix}.oban_jobs IS {version}",
        prefix,
        version=sql.Literal(str(version)),
    )


def _heartbeats_up(prefix: str) -> Statement:
    # UNLOGGED: rows are leases rewritten every few seconds; losing them in a crash is harmless.
    return ddl(
        """
        CREATE UNLOGGED TABLE IF NOT EXISTS {prefix}.{table} (
          uuid uuid PRIMARY KEY,
          node text NOT NULL,
          queue text NOT NULL,
          name text NOT NULL,
          started_at timestamp without time zone NOT NULL,
          updated_at timestamp without time zone NOT NULL
        )
        """,
        prefix,
        table=sql.Identifier(HEARTBEATS_TABLE),
    )


def _flow_starts_up(prefix: str) -> list[Statement]:
    # Logged: a rate limit must hold across a server crash too. Rows live one period.
    return [
        ddl(
            """
            CREATE TABLE IF NOT EXISTS {prefix}.{table} (
              queue text NOT NULL,
              key text NOT NULL,
              started_at timestamp without time zone NOT NULL
            )
            """,
            prefix,
            table=sql.Identifier(FLOW_STARTS_TABLE),
        ),
        ddl(
            "CREATE INDEX IF NOT EXISTS {index} ON {prefix}.{table} (queue, started_at)",
            prefix,
            table=sql.Identifier(FLOW_STARTS_TABLE),
            index=sql.Identifier(f"{FLOW_STARTS_TABLE}_queue_started_at_index"),
        ),
    ]


def _queues_up(prefix: str) -> Statement:
    return ddl(
        """
        CREATE TABLE IF NOT EXISTS {prefix}.{table} (
          name text PRIMARY KEY,
          opts jsonb NOT NULL DEFAULT '{{}}'::jsonb,
          updated_at timestamp without time zone NOT NULL
        )
        """,
        prefix,
        table=sql.Identifier(QUEUES_TABLE),
    )


def _heartbeats_down(prefix: str) -> Statement:
    return ddl(
        "DROP TABLE IF EXISTS {prefix}.{table}, {prefix}.{flow}, {prefix}.{queues}",
        prefix,
        table=sql.Identifier(HEARTBEATS_TABLE),
        flow=sql.Identifier(FLOW_STARTS_TABLE),
        queues=sql.Identifier(QUEUES_TABLE),
    )


def _steps(prefix: str, current: int, target: int) -> list[Statement]:
    """Statements taking the schema from ``current`` to ``target``, like Elixir's ``change``."""
    statements: list[Statement] = []
    if target > current:
        for version in range(max(current + 1, INITIAL_VERSION), target + 1):
            statements += VERSIONS[version].up(prefix)
    elif target < current:
        for version in range(current, target, -1):
            statements += VERSIONS[version].down(prefix)
    if target >= INITIAL_VERSION:
        if target != current:
            statements.append(_record_version(prefix, target))
        statements.append(_heartbeats_up(prefix))
        statements += _flow_starts_up(prefix)
        statements.append(_queues_up(prefix))
    return statements


def install_sql(prefix: str = DEFAULT_PREFIX, version: int = CURRENT_VERSION) -> str:
    """The SQL text installing the schema from nothing up to ``version`` (and recording it).

    Meant for migration tools: run it as one script, e.g. ``op.execute(install_sql())`` in an
    Alembic revision or ``migrations.RunSQL(install_sql())`` in Django. It contains no
    parameters and no transaction control, so it runs inside the tool's transaction.
    """
    _validate(version, INITIAL_VERSION)
    return "".join(stmt.as_string(None).strip() + ";\n\n" for stmt in _steps(prefix, 0, version))


async def migrated_version(conn: psycopg.AsyncConnection[Any], prefix: str = DEFAULT_PREFIX) -> int:
    """The version recorded on ``<prefix>.oban_jobs`` (0 when the table or comment is absent)."""
    cur = await conn.execute(
        "SELECT d.description"
        " FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0"
        " AND d.classoid = 'pg_catalog.pg_class'::regclass"
        " WHERE c.relname = 'oban_jobs' AND n.nspname = %s",
        (prefix,),
    )
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return 0
    text = str(row[0]).strip()
    return int(text) if text.isdigit() else 0


async def _run(conn: psycopg.AsyncConnection[Any], prefix: str, target: int) -> tuple[int, int]:
    async with conn.transaction():
        # Two nodes migrating the same prefix at once would interleave DDL; serialize them.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"oban_py.schema:{prefix}",)
        )
        current = await migrated_version(conn, prefix)
        for stmt in _steps(prefix, current, target):
            await conn.execute(stmt)
    return current, target


async def migrate(
    conn: psycopg.AsyncConnection[Any],
    prefix: str = DEFAULT_PREFIX,
    version: int = CURRENT_VERSION,
) -> tuple[int, int]:
    """Bring the schema in ``prefix`` to ``version``, up or down, in one transaction.

    Returns ``(version found, version now)``. Going down to ``N`` runs the ``down`` steps of
    every version above ``N`` and records ``N``: the result is what migrating up to ``N`` gives.
    Elixir's ``Oban.Migration.down(version: N)`` differs: it also undoes ``N`` itself.
    """
    _validate(version, INITIAL_VERSION)
    return await _run(conn, prefix, version)


install = migrate


async def uninstall(conn: psycopg.AsyncConnection[Any], prefix: str = DEFAULT_PREFIX) -> None:
    """Remove every Oban object from ``prefix`` (the schema itself stays, as in Elixir)."""
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"oban_py.schema:{prefix}",)
        )
        current = max(await migrated_version(conn, prefix), INITIAL_VERSION)
        await conn.execute(_heartbeats_down(prefix))
        for stmt in _steps(prefix, current, 0):
            await conn.execute(stmt)


def fix_command(dsn: str | None, prefix: str) -> str:
    """The ``oban-py migrate`` command line that brings the database at ``dsn`` up to date.

    It shows the DSN the user gave, not psycopg's parsed conninfo (which drops the password and
    adds libpq's defaults): ``"$OBAN_DSN"``/``"$DATABASE_URL"`` when it came from there, else
    the string itself with its password masked, so nothing secret reaches a log or a terminal.
    """
    shown = shell_dsn(dsn)
    return f"oban-py migrate --dsn {shown} --prefix {shlex.quote(prefix)}"


def schema_problem(found: int, prefix: str, dsn: str | None) -> str | None:
    """What is wrong with a schema at version ``found`` and the command fixing it, or None."""
    if found >= CURRENT_VERSION:
        return None
    state = "is not installed" if found == 0 else f"is at version {found}"
    return (
        f"The Oban schema in prefix {prefix!r} {state}; oban_py needs version {CURRENT_VERSION}."
        f" Run: {fix_command(dsn, prefix)}"
    )


async def check(
    conn: psycopg.AsyncConnection[Any], prefix: str = DEFAULT_PREFIX, dsn: str | None = None
) -> None:
    """Raise :class:`SchemaError` unless the schema is installed at ``CURRENT_VERSION`` or later.

    ``dsn`` is the connection string as the user gave it, for the fix command in the message.
    """
    problem = schema_problem(await migrated_version(conn, prefix), prefix, dsn)
    if problem is not None:
        raise SchemaError(problem)
