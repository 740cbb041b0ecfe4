"""Every SQL statement lives in ``oban_py/sql/<name>.sql``; this module loads them by name.

Statements refer to tables and types as ``{prefix}.oban_jobs``; the prefix is bound once per
instance through ``psycopg.sql.Identifier`` (so any schema name is quoted correctly and can never
inject SQL) and rendered to bytes, so the hot path never re-composes a query. Values are always
passed as parameters (``%(name)s`` or ``%s``); a literal ``%`` in a statement is written ``%%``
and a literal brace ``{{``. An expression several statements share is a part of its own, placed
where a statement writes its name in braces (``PARTS``).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from psycopg import sql


@cache
def statement_text(name: str) -> str:
    """The raw text of ``sql/<name>.sql``; raises FileNotFoundError for an unknown name."""
    return files("oban_py.sql").joinpath(f"{name}.sql").read_text(encoding="utf-8")


#: Parts several statements share (``sql/<name>.sql``), placed where a statement writes
#: ``{name}``: what every claim writes, the end of every flow claim, what every cancel does and
#: what every rescue writes. A part may place the parts listed before it.
PARTS = ("claim_update", "flow_take", "cancel_targets", "rescue_doomed")


def _body(part: str) -> str:
    """A part without its header comment, which is for readers of the file: placed in a hot
    statement it would be sent to the server with every execution."""
    lines = part.splitlines(keepends=True)
    while lines and lines[0].startswith("--"):
        lines.pop(0)
    return "".join(lines).strip("\n")


@cache
def _parts(prefix: str) -> dict[str, sql.Composable]:
    """``PARTS`` bound to ``prefix``, and the partition key of a flow-limited queue's job
    (``flow_key.sql``) under the global limit's parameters (``{flow_key_g}``, ``g_*``) and the
    rate limit's (``{flow_key_r}``), so the claim and the usage read count by the same key."""
    ident = sql.Identifier(prefix)
    parts: dict[str, sql.Composable] = {}
    for name in PARTS:
        parts[name] = sql.SQL(_body(statement_text(name))).format(prefix=ident, **parts)
    key = statement_text("flow_key")
    for side in "gr":
        parts[f"flow_key_{side}"] = sql.SQL(key.replace("%(side_", f"%({side}_"))
    return parts


def compose(text: str, prefix: str) -> bytes:
    return sql.SQL(text).format(prefix=sql.Identifier(prefix), **_parts(prefix)).as_bytes(None)


class Queries:
    """Named statements bound to one prefix, rendered once and cached."""

    __slots__ = ("_cache", "prefix")

    def __init__(self, prefix: str = "public") -> None:
        self.prefix = prefix
        self._cache: dict[str, bytes] = {}

    def __getitem__(self, name: str) -> bytes:
        query = self._cache.get(name)
        if query is None:
            query = self._cache[name] = compose(statement_text(name), self.prefix)
        return query
