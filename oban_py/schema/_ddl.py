"""Composition of DDL statements bound to one prefix.

Statement texts write the schema as ``{prefix}`` (rendered as a quoted identifier) and, where the
name is needed as a value (catalog lookups, notification channels), as ``{prefix_name}`` (rendered
as a string literal). A literal brace is ``{{``.
"""

from __future__ import annotations

import inspect

from psycopg import sql

Statement = sql.Composed
DEFAULT_PREFIX = "public"


def ddl(text: str, prefix: str, **extra: sql.Composable) -> sql.Composed:
    """One statement with ``{prefix}``/``{prefix_name}`` bound to ``prefix``."""
    return sql.SQL(inspect.cleandoc(text)).format(
        prefix=sql.Identifier(prefix), prefix_name=sql.Literal(prefix), **extra
    )


def add_state_label(prefix: str, label: str, placement: str = "") -> sql.Composed:
    """Add ``label`` to ``oban_job_state`` unless the type already has it.

    ``placement`` is an optional ``BEFORE 'x'`` clause. The catalog is read rather than
    enum_range(): that would reject a label added earlier in this transaction as an unsafe use
    of an uncommitted enum value.
    """
    return ddl(
        """
        DO $$
        BEGIN
          IF NOT EXISTS (
            SELECT 1
            FROM pg_catalog.pg_enum e
            JOIN pg_catalog.pg_type t ON t.oid = e.enumtypid
            JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = {prefix_name} AND t.typname = 'oban_job_state'
              AND e.enumlabel = {label}
          ) THEN
            ALTER TYPE {prefix}.oban_job_state ADD VALUE {label} {placement};
          END IF;
        END $$
        """,
        prefix,
        label=sql.Literal(label),
        placement=sql.SQL(placement),
    )


def literal(value: str) -> sql.Literal:
    return sql.Literal(value)


def notify_function_v01(prefix: str) -> sql.Composed:
    """The V01 insert/update trigger function, which V08 replaced and V12 removed.

    It announced inserts of due jobs on ``<prefix>.oban_insert`` and every state change on
    ``<prefix>.oban_update``.
    """
    return ddl(
        """
        CREATE OR REPLACE FUNCTION {prefix}.oban_jobs_notify() RETURNS trigger AS $$
        DECLARE
          channel text;
          notice json;
        BEGIN
          IF TG_OP = 'INSERT' THEN
            IF NEW.scheduled_at IS NOT NULL AND NEW.scheduled_at > now() AT TIME ZONE 'utc' THEN
              RETURN NULL;
            END IF;
            channel = {insert_channel};
            notice = json_build_object('queue', NEW.queue, 'state', NEW.state);
          ELSE
            channel = {update_channel};
            notice = json_build_object(
              'queue', NEW.queue, 'new_state', NEW.state, 'old_state', OLD.state);
          END IF;
          PERFORM pg_notify(channel, notice::text);
          RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """,
        prefix,
        insert_channel=literal(f"{prefix}.oban_insert"),
        update_channel=literal(f"{prefix}.oban_update"),
    )


def notify_trigger_v01(prefix: str) -> list[Statement]:
    return [
        ddl("DROP TRIGGER IF EXISTS oban_notify ON {prefix}.oban_jobs", prefix),
        ddl(
            "CREATE TRIGGER oban_notify AFTER INSERT OR UPDATE OF state ON {prefix}.oban_jobs"
            " FOR EACH ROW EXECUTE FUNCTION {prefix}.oban_jobs_notify()",
            prefix,
        ),
    ]


def notify_function_v08(prefix: str) -> sql.Composed:
    """The V08 insert trigger function: ``{"queue": Q}`` on ``<prefix>.oban_insert`` for
    every row inserted as ``available``. V12 removed it (applications notify themselves)."""
    return ddl(
        """
        CREATE OR REPLACE FUNCTION {prefix}.oban_jobs_notify() RETURNS trigger AS $$
        BEGIN
          IF NEW.state = 'available' THEN
            PERFORM pg_notify({insert_channel}, json_build_object('queue', NEW.queue)::text);
          END IF;
          RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """,
        prefix,
        insert_channel=literal(f"{prefix}.oban_insert"),
    )


def notify_trigger_v08(prefix: str) -> list[Statement]:
    return [
        ddl("DROP TRIGGER IF EXISTS oban_notify ON {prefix}.oban_jobs", prefix),
        ddl(
            "CREATE TRIGGER oban_notify AFTER INSERT ON {prefix}.oban_jobs"
            " FOR EACH ROW EXECUTE FUNCTION {prefix}.oban_jobs_notify()",
            prefix,
        ),
    ]


def wrap_id_function(prefix: str) -> sql.Composed:
    """``oban_wrap_id(bigint) -> int``: folds ids above int4 range, added by V02, dropped by V04."""
    return ddl(
        """
        CREATE OR REPLACE FUNCTION {prefix}.oban_wrap_id(value bigint) RETURNS int AS $$
        BEGIN
          IF value > 2147483647 THEN
            RETURN mod(value, 2147483647)::int;
          END IF;
          RETURN value::int;
        END;
        $$ LANGUAGE plpgsql IMMUTABLE
        """,
        prefix,
    )


def scheduled_at_partial_index(prefix: str) -> sql.Composed:
    return ddl(
        "CREATE INDEX oban_jobs_scheduled_at_index ON {prefix}.oban_jobs (scheduled_at)"
        " WHERE state IN ('available'::{prefix}.oban_job_state,"
        " 'scheduled'::{prefix}.oban_job_state)",
        prefix,
    )
