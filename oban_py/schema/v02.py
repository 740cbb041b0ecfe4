"""V02: partial ``scheduled_at`` index, length checks on worker and queue, ``oban_wrap_id``."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, ddl, scheduled_at_partial_index, wrap_id_function

VERSION = 2


def up(prefix: str) -> list[Statement]:
    """Narrow the scheduled_at index to the states that are staged, add the length checks."""
    return [
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_scheduled_at_index", prefix),
        scheduled_at_partial_index(prefix),
        ddl(
            "ALTER TABLE {prefix}.oban_jobs ADD CONSTRAINT worker_length"
            " CHECK (char_length(worker) > 0 AND char_length(worker) < 128)",
            prefix,
        ),
        ddl(
            "ALTER TABLE {prefix}.oban_jobs ADD CONSTRAINT queue_length"
            " CHECK (char_length(queue) > 0 AND char_length(queue) < 128)",
            prefix,
        ),
        wrap_id_function(prefix),
    ]


def down(prefix: str) -> list[Statement]:
    """Restore the V01 index and drop the checks and the function."""
    return [
        ddl("ALTER TABLE {prefix}.oban_jobs DROP CONSTRAINT IF EXISTS queue_length", prefix),
        ddl("ALTER TABLE {prefix}.oban_jobs DROP CONSTRAINT IF EXISTS worker_length", prefix),
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_scheduled_at_index", prefix),
        ddl(
            "CREATE INDEX oban_jobs_scheduled_at_index ON {prefix}.oban_jobs (scheduled_at)", prefix
        ),
        ddl("DROP FUNCTION IF EXISTS {prefix}.oban_wrap_id(bigint)", prefix),
    ]
