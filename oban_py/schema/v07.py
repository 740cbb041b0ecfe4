"""V07: an index for pruning finished jobs by ``attempted_at`` (V10 drops it again)."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, ddl

VERSION = 7


def up(prefix: str) -> list[Statement]:
    """Add the partial (attempted_at DESC, id) index over completed and discarded jobs."""
    return [
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_attempted_at_id_index"
            " ON {prefix}.oban_jobs (attempted_at DESC, id)"
            " WHERE state IN ('completed', 'discarded')",
            prefix,
        )
    ]


def down(prefix: str) -> list[Statement]:
    """Drop that index."""
    return [ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_attempted_at_id_index", prefix)]
