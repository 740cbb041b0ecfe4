"""What Django's connection sees of the Oban schema: the version Elixir records on
``oban_jobs`` and whether this library's heartbeats table is there."""

from __future__ import annotations

from dataclasses import dataclass

from oban_py.schema import CURRENT_VERSION, HEARTBEATS_TABLE
from oban_py_ext.django import conf

# The catalog lookup of oban_py.schema.migrated_version (async there), plus the heartbeats table.
_STATE = """
SELECT (SELECT d.description
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0
           AND d.classoid = 'pg_catalog.pg_class'::regclass
         WHERE c.relname = 'oban_jobs' AND n.nspname = %(prefix)s),
       EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relname = %(heartbeats)s AND n.nspname = %(prefix)s)
"""


@dataclass(frozen=True)
class SchemaState:
    version: int
    heartbeats: bool

    @property
    def problem(self) -> str | None:
        """Why a node cannot run on this schema, or None when it can."""
        where = f"The Oban schema in prefix {conf.prefix()!r}"
        if self.version == 0:
            return f"{where} is not installed"
        if self.version < CURRENT_VERSION:
            return f"{where} is at version {self.version}; oban_py needs {CURRENT_VERSION}"
        if not self.heartbeats:
            return f"{where} lacks the {HEARTBEATS_TABLE} table Python nodes record liveness in"
        return None


#: What fixes every problem above, from a Django project.
FIX = "Run: python manage.py oban migrate"


def schema_state(using: str | None = None) -> SchemaState:
    from django.db import connections

    with connections[using or conf.database()].cursor() as cur:
        cur.execute(_STATE, {"prefix": conf.prefix(), "heartbeats": HEARTBEATS_TABLE})
        comment, heartbeats = cur.fetchone()
    text = str(comment or "").strip()
    return SchemaState(int(text) if text.isdigit() else 0, bool(heartbeats))
