"""V14: the ``suspended`` state, placed before ``scheduled``, for installs that lack it."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, ddl

VERSION = 14


def up(prefix: str) -> list[Statement]:
    """Add ``suspended`` unless present."""
    return [
        ddl(
            """
            DO $$
            BEGIN
              -- The catalog, not enum_range(): that would reject a label added earlier in this
              -- transaction as an unsafe use of an uncommitted enum value.
              IF NOT EXISTS (
                SELECT 1
                FROM pg_catalog.pg_enum e
                JOIN pg_catalog.pg_type t ON t.oid = e.enumtypid
                JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                WHERE n.nspname = {prefix_name} AND t.typname = 'oban_job_state'
                  AND e.enumlabel = 'suspended'
              ) THEN
                ALTER TYPE {prefix}.oban_job_state ADD VALUE 'suspended' BEFORE 'scheduled';
              END IF;
            END $$
            """,
            prefix,
        )
    ]


def down(prefix: str) -> list[Statement]:
    """Nothing: like Elixir, the label stays (an enum label cannot be dropped in place)."""
    return []
