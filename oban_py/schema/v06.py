"""V06: empty. It once changed the ``oban_beats`` table, which Oban no longer creates."""

from __future__ import annotations

from oban_py.schema._ddl import Statement

VERSION = 6


def up(prefix: str) -> list[Statement]:
    """Nothing to do."""
    return []


def down(prefix: str) -> list[Statement]:
    """Nothing to do."""
    return []
