"""V03: ``attempted_by text[]``, the node and producer that ran the last attempt."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, ddl

VERSION = 3


def up(prefix: str) -> list[Statement]:
    """Add ``attempted_by``."""
    return [
        ddl("ALTER TABLE {prefix}.oban_jobs ADD COLUMN IF NOT EXISTS attempted_by text[]", prefix)
    ]


def down(prefix: str) -> list[Statement]:
    """Remove ``attempted_by``."""
    return [ddl("ALTER TABLE {prefix}.oban_jobs DROP COLUMN IF EXISTS attempted_by", prefix)]
