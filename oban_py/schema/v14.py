"""V14: the ``suspended`` state, placed before ``scheduled``, for installs that lack it."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, add_state_label

VERSION = 14


def up(prefix: str) -> list[Statement]:
    """Add ``suspended`` unless present."""
    return [add_state_label(prefix, "suspended", "BEFORE 'scheduled'")]


def down(prefix: str) -> list[Statement]:
    """Nothing: like Elixir, the label stays (an enum label cannot be dropped in place)."""
    return []
