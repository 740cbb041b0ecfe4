"""The schema layer reproduces Elixir Oban 2.23.1's migrations object by object.

Every comparison introspects two databases through the catalogs: one built by ``oban_py.schema``
and one into which a ``pg_dump`` captured from real Elixir Oban (``compat_fixtures``) was loaded.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import FIXTURES, Dropper, create_database, dsn_for

from oban_py import schema
from oban_py.job.errors import SchemaError

Snapshot = dict[str, str]

# Our additive tables (liveness, the rate limits' log of starts) are no part of Elixir's schema,
# so they can never appear in a dump of an Elixir-managed database; they are left out of every
# comparison (and checked on their own below).
EXCLUDED_TABLES = {schema.HEARTBEATS_TABLE, schema.FLOW_STARTS_TABLE, schema.QUEUES_TABLE}

INTROSPECTION = {
    "enum": """
        SELECT t.typname, string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
        FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typnamespace = %(ns)s::regnamespace
        GROUP BY t.typname
    """,
    "relation": """
        SELECT c.relname,
               format('kind=%%s persistence=%%s comment=%%s',
                      c.relkind, c.relpersistence, obj_description(c.oid, 'pg_class'))
        FROM pg_class c
        WHERE c.relnamespace = %(ns)s::regnamespace AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
    """,
    "columns": """
        SELECT c.relname,
               string_agg(format('%%s %%s default=%%s not_null=%%s identity=%%s',
                                 a.attname, format_type(a.atttypid, a.atttypmod),
                                 pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.attidentity),
                          ' | ' ORDER BY a.attnum)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = %(ns)s::regnamespace AND c.relkind IN ('r', 'p')
          AND a.attnum > 0 AND NOT a.attisdropped
        GROUP BY c.relname
    """,
    "constraint": """
        SELECT format('%%s.%%s', c.relname, k.conname),
               format('%%s validated=%%s', pg_get_constraintdef(k.oid), k.convalidated)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE k.connamespace = %(ns)s::regnamespace
    """,
    "index": """
        SELECT i.relname, pg_get_indexdef(i.oid)
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        WHERE i.relnamespace = %(ns)s::regnamespace
    """,
    "sequence": """
        SELECT c.relname,
               format('%%s start=%%s inc=%%s min=%%s max=%%s cache=%%s cycle=%%s owned_by=%%s',
                      s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
                      s.seqcache, s.seqcycle,
                      (SELECT format('%%s.%%s', t.relname, a.attname)
                       FROM pg_depend dep
                       JOIN pg_class t ON t.oid = dep.refobjid
                       JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = dep.refobjsubid
                       WHERE dep.objid = c.oid AND dep.deptype = 'a'
                         AND dep.classid = 'pg_class'::regclass))
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        WHERE c.relnamespace = %(ns)s::regnamespace
    """,
    # Bodies of the transitional trigger functions are our own text, so only the signature,
    # language and volatility are compared; triggers are compared in full.
    "function": """
        SELECT format('%%s(%%s)', p.proname, pg_get_function_identity_arguments(p.oid)),
               format('returns %%s language %%s volatility %%s',
                      pg_get_function_result(p.oid), l.lanname, p.provolatile)
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace = %(ns)s::regnamespace
    """,
    "trigger": """
        SELECT t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = %(ns)s::regnamespace AND NOT t.tgisinternal
    """,
}


def introspect(dsn: str, namespace: str) -> Snapshot:
    """Every Oban-relevant catalog fact of ``namespace``, as ``{"kind name": "definition"}``."""
    snapshot: Snapshot = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        # An empty search_path makes every rendered name schema-qualified, in both databases.
        conn.execute("SET search_path = ''")
        exists = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (namespace,)
        ).fetchone()
        if exists is None:
            return snapshot
        ns = psycopg.sql.Identifier(namespace).as_string(conn)
        for kind, query in INTROSPECTION.items():
            for name, definition in conn.execute(query, {"ns": ns}).fetchall():
                snapshot[f"{kind} {name}"] = str(definition)
    return {key: value for key, value in snapshot.items() if not _excluded(key)}


def _excluded(key: str) -> bool:
    name = key.split(" ", 1)[1]
    return any(name == t or name.startswith((f"{t}.", f"{t}_")) for t in EXCLUDED_TABLES)


def assert_same_schema(actual: Snapshot, expected: Snapshot, label: str) -> None:
    assert expected, f"{label}: the reference snapshot is empty"
    if actual != expected:
        lines = difflib.unified_diff(
            [f"{k}: {v}" for k, v in sorted(expected.items())],
            [f"{k}: {v}" for k, v in sorted(actual.items())],
            fromfile=f"elixir ({label})",
            tofile="oban_py",
            lineterm="",
        )
        pytest.fail(f"schema differs from Elixir's ({label}):\n" + "\n".join(lines))


def load_dump(dsn: str, path: Path) -> None:
    """Run a plain-SQL pg_dump file without psql: meta-commands (``\\...``) are dropped."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("\\"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(text.encode())


NewDb = Callable[[], str]


@pytest.fixture
def new_db(server_dsn: str, dropper: Dropper) -> Iterator[NewDb]:
    """Creates extra empty databases on demand, all dropped after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(create_database(server_dsn))
        return dsn_for(server_dsn, names[-1])

    yield make
    for name in names:
        dropper.drop(name)


_elixir_cache: dict[tuple[str, str], Snapshot] = {}


def elixir_snapshot(new_db: NewDb, dump: str, namespace: str = "public") -> Snapshot:
    """The snapshot of an Elixir dump, loaded into a database of its own (cached per run)."""
    key = (dump, namespace)
    if key not in _elixir_cache:
        dsn = new_db()
        load_dump(dsn, FIXTURES / dump)
        _elixir_cache[key] = introspect(dsn, namespace)
    return _elixir_cache[key]


async def run_migrate(dsn: str, prefix: str = "public", version: int = 14) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await schema.migrate(conn, prefix, version)


async def version_of(dsn: str, prefix: str = "public") -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await schema.migrated_version(conn, prefix)


# 1, 2: a fresh install is Elixir's V14 schema.


async def test_install_into_empty_database_matches_elixir_schema(
    empty_dsn: str, new_db: NewDb
) -> None:
    assert await run_migrate(empty_dsn) == (0, 14)
    actual = introspect(empty_dsn, "public")
    assert actual["relation oban_jobs"].endswith("comment=14")
    assert_same_schema(actual, elixir_snapshot(new_db, "schema.sql"), "schema.sql")


async def test_install_with_private_prefix_matches_elixir_prefixed_schema(
    empty_dsn: str, new_db: NewDb
) -> None:
    assert await run_migrate(empty_dsn, "private") == (0, 14)
    assert introspect(empty_dsn, "public") == {}
    assert_same_schema(
        introspect(empty_dsn, "private"),
        elixir_snapshot(new_db, "schema_prefixed.sql", "private"),
        "schema_prefixed.sql",
    )


def test_install_sql_script_matches_elixir_schema(empty_dsn: str, new_db: NewDb) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(schema.install_sql().encode())
    assert_same_schema(
        introspect(empty_dsn, "public"), elixir_snapshot(new_db, "schema.sql"), "install_sql"
    )


def test_install_sql_is_safe_for_migration_tools() -> None:
    # Drivers with %-style parameters (psycopg2 under SQLAlchemy, Django) and text() binds
    # (":name") must pass the script through unchanged.
    for prefix in ("public", "private", "My-Schema"):
        script = schema.install_sql(prefix)
        assert "%" not in script
        assert not re.search(r"(?<![:\w]):\w", script)
        assert not re.search(r"^\s*(BEGIN|COMMIT|ROLLBACK)\s*;", script, re.M | re.I)
        assert script.rstrip().endswith(";")


async def test_install_creates_the_heartbeats_table_outside_the_version(empty_dsn: str) -> None:
    await run_migrate(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("SET search_path = ''")
        columns = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
            " WHERE attrelid = 'public.oban_py_heartbeats'::regclass AND attnum > 0"
            " ORDER BY attnum"
        ).fetchall()
        persistence = conn.execute(
            "SELECT relpersistence FROM pg_class WHERE oid = 'public.oban_py_heartbeats'::regclass"
        ).fetchone()
    assert columns == [
        ("uuid", "uuid", True),
        ("node", "text", True),
        ("queue", "text", True),
        ("name", "text", True),
        ("started_at", "timestamp without time zone", True),
        ("updated_at", "timestamp without time zone", True),
    ]
    assert persistence == ("u",)


async def test_migrate_is_idempotent_and_keeps_the_version_comment(empty_dsn: str) -> None:
    await run_migrate(empty_dsn)
    before = introspect(empty_dsn, "public")
    assert await run_migrate(empty_dsn) == (14, 14)
    assert introspect(empty_dsn, "public") == before


async def test_migrate_on_elixir_installed_database_only_adds_heartbeats(
    empty_dsn: str, new_db: NewDb
) -> None:
    load_dump(empty_dsn, FIXTURES / "schema.sql")
    assert await version_of(empty_dsn) == 14
    assert await run_migrate(empty_dsn) == (14, 14)
    assert_same_schema(
        introspect(empty_dsn, "public"), elixir_snapshot(new_db, "schema.sql"), "schema.sql"
    )
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.oban_py_heartbeats')").fetchone() == (
            "oban_py_heartbeats",
        )


# 3: prefixes needing quotes.


async def test_prefix_needing_quotes_installs_migrates_and_uninstalls(
    empty_dsn: str, new_db: NewDb
) -> None:
    prefix = "My-Schema"
    assert await run_migrate(empty_dsn, prefix) == (0, 14)
    assert await version_of(empty_dsn, prefix) == 14
    quoted = introspect(empty_dsn, prefix)
    renamed = {k: v.replace('"My-Schema".', "private.") for k, v in quoted.items()}
    assert_same_schema(
        renamed, elixir_snapshot(new_db, "schema_prefixed.sql", "private"), "My-Schema"
    )

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(
            'INSERT INTO "My-Schema".oban_jobs (worker, args, state) VALUES (%s, %s, %s)',
            ("Python.Worker", "{}", "cancelled"),
        )
    assert await run_migrate(empty_dsn, prefix, 8) == (14, 8)
    assert await run_migrate(empty_dsn, prefix) == (8, 14)
    assert introspect(empty_dsn, prefix) == quoted

    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        await schema.uninstall(conn, prefix)
    assert introspect(empty_dsn, prefix) == {}
    assert await version_of(empty_dsn, prefix) == 0


# 4: every version and every upgrade path.


@pytest.mark.parametrize("version", range(1, 15))
def test_install_sql_at_each_version_matches_elixir(
    version: int, empty_dsn: str, new_db: NewDb
) -> None:
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(schema.install_sql(version=version).encode())
    dump = f"schema_versions/v{version:02d}.sql"
    assert_same_schema(introspect(empty_dsn, "public"), elixir_snapshot(new_db, dump), dump)


@pytest.mark.parametrize("start", [1, 7, 8, 9, 11, 12, 13])
async def test_upgrade_from_elixir_database_at_version_reaches_v14(
    start: int, empty_dsn: str, new_db: NewDb
) -> None:
    load_dump(empty_dsn, FIXTURES / f"schema_versions/v{start:02d}.sql")
    assert await run_migrate(empty_dsn) == (start, 14)
    assert_same_schema(
        introspect(empty_dsn, "public"), elixir_snapshot(new_db, "schema.sql"), f"from v{start}"
    )


async def test_upgrade_from_old_enum_adds_cancelled_and_suspended_in_elixir_order(
    empty_dsn: str, new_db: NewDb
) -> None:
    # Installs made by older Oban releases have a six-label enum; V09 and V14 complete it.
    dump = (FIXTURES / "schema_versions/v08.sql").read_text()
    dump = dump.replace("    'suspended',\n", "").replace(",\n    'cancelled'\n", "\n")
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute(dump.encode())
        labels = conn.execute("SELECT enum_range(NULL::public.oban_job_state)::text[]").fetchone()
    assert labels == (
        ["available", "scheduled", "executing", "retryable", "completed", "discarded"],
    )
    assert await run_migrate(empty_dsn) == (8, 14)
    assert_same_schema(
        introspect(empty_dsn, "public"), elixir_snapshot(new_db, "schema.sql"), "old enum"
    )


# 5: down and back up; uninstall.


@pytest.mark.parametrize("target", [1, 8, 9, 11, 13])
async def test_migrate_down_then_up_restores_v14(
    target: int, empty_dsn: str, new_db: NewDb
) -> None:
    await run_migrate(empty_dsn)
    assert await run_migrate(empty_dsn, version=target) == (14, target)
    assert await version_of(empty_dsn) == target
    assert await run_migrate(empty_dsn) == (target, 14)
    assert_same_schema(
        introspect(empty_dsn, "public"), elixir_snapshot(new_db, "schema.sql"), f"via v{target}"
    )


@pytest.mark.parametrize("target", [12, 13])
async def test_migrate_down_to_recent_version_matches_elixir_at_that_version(
    target: int, empty_dsn: str, new_db: NewDb
) -> None:
    await run_migrate(empty_dsn)
    await run_migrate(empty_dsn, version=target)
    dump = f"schema_versions/v{target:02d}.sql"
    assert_same_schema(introspect(empty_dsn, "public"), elixir_snapshot(new_db, dump), dump)


async def test_migrate_down_to_v11_restores_priority_range_unvalidated_like_elixir(
    empty_dsn: str, new_db: NewDb
) -> None:
    # Elixir's V12 down re-adds priority_range NOT VALID (rows may hold priorities above 3 by
    # then), so the only difference from a fresh V11 is that flag.
    await run_migrate(empty_dsn)
    await run_migrate(empty_dsn, version=11)
    expected = dict(elixir_snapshot(new_db, "schema_versions/v11.sql"))
    key = "constraint oban_jobs.priority_range"
    assert expected[key].endswith(" validated=t")
    expected[key] = expected[key].replace(" validated=t", " NOT VALID validated=f")
    assert_same_schema(introspect(empty_dsn, "public"), expected, "v11 after down")


async def test_migrate_down_below_v09_turns_cancelled_jobs_into_discarded(empty_dsn: str) -> None:
    await run_migrate(empty_dsn)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO oban_jobs (worker, state) VALUES ('W', 'cancelled')")
    await run_migrate(empty_dsn, version=8)
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT state::text FROM oban_jobs").fetchone()
        labels = conn.execute("SELECT enum_range(NULL::oban_job_state)::text[]").fetchone()
    assert row == ("discarded",)
    assert labels is not None
    assert "cancelled" not in labels[0]


async def test_uninstall_leaves_nothing(empty_dsn: str) -> None:
    await run_migrate(empty_dsn)
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        await schema.uninstall(conn)
        assert await schema.migrated_version(conn) == 0
    assert introspect(empty_dsn, "public") == {}
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('public.oban_py_heartbeats')").fetchone() == (None,)


async def test_uninstall_of_missing_schema_is_a_no_op(empty_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        await schema.uninstall(conn, "nowhere")
        assert await schema.migrated_version(conn, "nowhere") == 0


async def test_migrate_rejects_versions_out_of_range(empty_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        for bad in (0, 15):
            with pytest.raises(ValueError, match="between 1 and 14"):
                await schema.migrate(conn, version=bad)
    with pytest.raises(ValueError):
        schema.install_sql(version=15)


# 6: check.


async def test_check_raises_on_empty_database_with_fix_command(empty_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        with pytest.raises(SchemaError) as raised:
            await schema.check(conn)
    message = str(raised.value)
    assert "is not installed" in message
    assert "needs version 14" in message
    assert "oban-py migrate --dsn " in message
    assert "--prefix public" in message


async def test_check_raises_on_v12_database_naming_both_versions(empty_dsn: str) -> None:
    load_dump(empty_dsn, FIXTURES / "schema_versions/v12.sql")
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        with pytest.raises(SchemaError, match="is at version 12; oban_py needs version 14"):
            await schema.check(conn)


async def test_check_passes_on_v14_database(empty_dsn: str) -> None:
    load_dump(empty_dsn, FIXTURES / "schema.sql")
    async with await psycopg.AsyncConnection.connect(empty_dsn, autocommit=True) as conn:
        await schema.check(conn)
        with pytest.raises(SchemaError, match="prefix 'private' is not installed"):
            await schema.check(conn, "private")


def test_the_documented_errors_queries_run_on_the_jsonb_array_column(dsn: str) -> None:
    # docs/schema.md says errors is jsonb[] (an array of jsonb), and shows how to query it.
    text = (Path(__file__).parent.parent / "docs" / "schema.md").read_text()
    block = text.split("## The jobs table", 1)[1].split("```sql", 1)[1].split("```", 1)[0]
    statements = [s.strip() for s in block.split(";") if s.strip()]
    with psycopg.connect(dsn, autocommit=True) as conn:
        kind = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'oban_jobs'::regclass AND attname = 'errors'"
        ).fetchone()
        assert kind == ("jsonb[]",)
        conn.execute("INSERT INTO oban_jobs (id, worker, args) VALUES (1, 'Docs.Worker', '{}')")
        for statement in reversed(statements):  # the UPDATE first, so the SELECTs find a row
            conn.execute(statement)
        failures = conn.execute(statements[0]).fetchall()
        assert [(row[0], row[1], row[2]) for row in failures] == [(1, 1, "boom")]
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("SELECT jsonb_array_length(errors) FROM oban_jobs")
