"""V13: indexes that let the pruner find cancelled and discarded jobs by age."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, ddl

VERSION = 13


def up(prefix: str) -> list[Statement]:
    """Add (state, cancelled_at) and (state, discarded_at)."""
    return [
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_state_cancelled_at_index"
            " ON {prefix}.oban_jobs (state, cancelled_at)",
            prefix,
        ),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_state_discarded_at_index"
            " ON {prefix}.oban_jobs (state, discarded_at)",
            prefix,
        ),
    ]


def down(prefix: str) -> list[Statement]:
    """Drop them."""
    return [
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_state_discarded_at_index", prefix),
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_state_cancelled_at_index", prefix),
    ]
