"""V08: ``discarded_at``, ``priority``, ``tags``, the priority-aware fetch index, and a trigger
that only announces ``available`` inserts."""

from __future__ import annotations

from oban_py.schema._ddl import (
    Statement,
    ddl,
    notify_function_v01,
    notify_function_v08,
    notify_trigger_v01,
    notify_trigger_v08,
)

VERSION = 8


def up(prefix: str) -> list[Statement]:
    """Add the columns (nullable, defaults set separately as Elixir does), swap the index."""
    return [
        ddl(
            "ALTER TABLE {prefix}.oban_jobs"
            " ADD COLUMN IF NOT EXISTS discarded_at timestamp without time zone,"
            " ADD COLUMN IF NOT EXISTS priority integer,"
            " ADD COLUMN IF NOT EXISTS tags text[]",
            prefix,
        ),
        ddl(
            "ALTER TABLE {prefix}.oban_jobs"
            " ALTER COLUMN priority SET DEFAULT 0,"
            " ALTER COLUMN tags SET DEFAULT ARRAY[]::text[]",
            prefix,
        ),
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_queue_state_scheduled_at_id_index", prefix),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_state_queue_priority_scheduled_at_id_index"
            " ON {prefix}.oban_jobs (state, queue, priority, scheduled_at, id)",
            prefix,
        ),
        notify_function_v08(prefix),
        *notify_trigger_v08(prefix),
    ]


def down(prefix: str) -> list[Statement]:
    """Restore the V05 index, drop the columns, restore the V01 trigger."""
    return [
        ddl(
            "DROP INDEX IF EXISTS {prefix}.oban_jobs_state_queue_priority_scheduled_at_id_index",
            prefix,
        ),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_queue_state_scheduled_at_id_index"
            " ON {prefix}.oban_jobs (queue, state, scheduled_at, id)",
            prefix,
        ),
        ddl(
            "ALTER TABLE {prefix}.oban_jobs"
            " DROP COLUMN IF EXISTS discarded_at,"
            " DROP COLUMN IF EXISTS priority,"
            " DROP COLUMN IF EXISTS tags",
            prefix,
        ),
        notify_function_v01(prefix),
        *notify_trigger_v01(prefix),
    ]
