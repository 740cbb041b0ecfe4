"""V11: ``oban_peers``, the leadership table (unlogged: it only holds leases)."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, ddl

VERSION = 11


def up(prefix: str) -> list[Statement]:
    """Create ``oban_peers``."""
    return [
        ddl(
            """
            CREATE UNLOGGED TABLE IF NOT EXISTS {prefix}.oban_peers (
              name text NOT NULL,
              node text NOT NULL,
              started_at timestamp without time zone NOT NULL,
              expires_at timestamp without time zone NOT NULL,
              PRIMARY KEY (name)
            )
            """,
            prefix,
        ),
        # An install that created the table logged before gets the same end state.
        ddl("ALTER TABLE {prefix}.oban_peers SET UNLOGGED", prefix),
    ]


def down(prefix: str) -> list[Statement]:
    """Drop ``oban_peers``."""
    return [ddl("DROP TABLE IF EXISTS {prefix}.oban_peers", prefix)]
