"""V05: one composite fetch index replaces the three single-column ones."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, ddl, scheduled_at_partial_index

VERSION = 5


def up(prefix: str) -> list[Statement]:
    """Replace the queue, state and scheduled_at indexes with (queue, state, scheduled_at, id)."""
    return [
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_scheduled_at_index", prefix),
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_queue_index", prefix),
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_state_index", prefix),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_queue_state_scheduled_at_id_index"
            " ON {prefix}.oban_jobs (queue, state, scheduled_at, id)",
            prefix,
        ),
    ]


def down(prefix: str) -> list[Statement]:
    """Restore the V02 indexes."""
    return [
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_queue_state_scheduled_at_id_index", prefix),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_queue_index ON {prefix}.oban_jobs (queue)", prefix
        ),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_state_index ON {prefix}.oban_jobs (state)", prefix
        ),
        scheduled_at_partial_index(prefix),
    ]
