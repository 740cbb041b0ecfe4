"""V09: ``meta jsonb``, ``cancelled_at`` and the ``cancelled`` state."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, add_state_label, ddl

VERSION = 9


def up(prefix: str) -> list[Statement]:
    """Add the columns; add ``cancelled`` to the enum unless it is there already.

    ``ADD VALUE`` inside a transaction is allowed from PostgreSQL 12 on; the value is not used
    by any later step of the same migration, so no commit is needed in between.
    """
    return [
        ddl(
            "ALTER TABLE {prefix}.oban_jobs"
            " ADD COLUMN IF NOT EXISTS meta jsonb DEFAULT '{{}}'::jsonb,"
            " ADD COLUMN IF NOT EXISTS cancelled_at timestamp without time zone",
            prefix,
        ),
        add_state_label(prefix, "cancelled"),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_state_queue_priority_scheduled_at_id_index"
            " ON {prefix}.oban_jobs (state, queue, priority, scheduled_at, id)",
            prefix,
        ),
    ]


def down(prefix: str) -> list[Statement]:
    """Drop the columns and the ``cancelled`` label; cancelled jobs become ``discarded``.

    PostgreSQL cannot remove an enum label, so the type is rebuilt with every other label kept
    in order (``suspended`` included) and the column converted in place, which keeps its
    position and its indexes.
    """
    return [
        ddl(
            "ALTER TABLE {prefix}.oban_jobs"
            " DROP COLUMN IF EXISTS meta,"
            " DROP COLUMN IF EXISTS cancelled_at",
            prefix,
        ),
        ddl(
            """
            DO $$
            DECLARE
              labels text;
            BEGIN
              UPDATE {prefix}.oban_jobs SET state = 'discarded' WHERE state::text = 'cancelled';
              ALTER TYPE {prefix}.oban_job_state RENAME TO old_oban_job_state;
              SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                INTO labels
                FROM pg_catalog.pg_enum e
                WHERE e.enumtypid = format('%I.old_oban_job_state', {prefix_name})::regtype
                  AND e.enumlabel <> 'cancelled';
              EXECUTE format('CREATE TYPE %I.oban_job_state AS ENUM (%s)', {prefix_name}, labels);
              ALTER TABLE {prefix}.oban_jobs ALTER COLUMN state DROP DEFAULT;
              ALTER TABLE {prefix}.oban_jobs
                ALTER COLUMN state TYPE {prefix}.oban_job_state
                USING state::text::{prefix}.oban_job_state;
              ALTER TABLE {prefix}.oban_jobs ALTER COLUMN state SET DEFAULT 'available';
              DROP TYPE {prefix}.old_oban_job_state;
            END $$
            """,
            prefix,
        ),
    ]
