"""V04: drops ``oban_wrap_id``, which nothing uses any more."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, ddl, wrap_id_function

VERSION = 4


def up(prefix: str) -> list[Statement]:
    """Drop ``oban_wrap_id``."""
    return [ddl("DROP FUNCTION IF EXISTS {prefix}.oban_wrap_id(bigint)", prefix)]


def down(prefix: str) -> list[Statement]:
    """Recreate ``oban_wrap_id``."""
    return [wrap_id_function(prefix)]
