"""System checks (``manage.py check``, and before ``migrate`` and ``oban start``): bad ``OBAN``
settings, a database that is not PostgreSQL, and (with ``--database``) a schema a node cannot
run on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from pydantic import ValidationError

from oban_py import Config
from oban_py_ext.django import conf


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'OBAN'}: {e['msg']}" for e in error.errors()
    )


@checks.register("oban")
def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    from django.conf import settings
    from django.db import connections

    raw = getattr(settings, "OBAN", {})
    if not isinstance(raw, dict):
        return [checks.Error("settings.OBAN must be a dict", id="oban.E001")]
    found: list[Any] = []
    values = {k: v for k, v in raw.items() if k not in conf.OWN_KEYS}
    try:
        # The DSN is checked on its own below; a placeholder keeps Config from asking for it.
        Config(**{"dsn": "postgresql://", **values})
    except ValidationError as error:
        found.append(
            checks.Error(
                f"invalid OBAN settings: {_problems(error)}",
                hint="OBAN takes the fields of oban_py.Config, plus 'database' and 'workers'.",
                id="oban.E001",
            )
        )
    workers = raw.get("workers", [])
    if not isinstance(workers, list | tuple) or not all(isinstance(w, str) for w in workers):
        found.append(checks.Error("OBAN['workers'] must be a list of module names", id="oban.E001"))
    alias = conf.database()
    if alias not in connections:
        found.append(
            checks.Error(f"OBAN['database'] is {alias!r}, not in DATABASES", id="oban.E002")
        )
        return found
    if connections[alias].vendor != "postgresql":
        found.append(
            checks.Error(
                f"oban_py needs PostgreSQL: DATABASES[{alias!r}] uses {connections[alias].vendor}",
                hint="Point OBAN['database'] at a PostgreSQL database (psycopg 3).",
                id="oban.E003",
            )
        )
        return found
    if not raw.get("dsn"):
        try:
            conf.dsn()
        except ImproperlyConfigured as error:
            found.append(checks.Error(str(error), id="oban.E004"))
    return found


@checks.register("oban", checks.Tags.database)
def check_schema(databases: Sequence[str] | None = None, **kwargs: Any) -> list[Any]:
    from django.db import DatabaseError, connections
    from django.db.migrations.recorder import MigrationRecorder

    alias = conf.database()
    if not databases or alias not in databases or alias not in connections:
        return []
    if connections[alias].vendor != "postgresql":
        return []
    from oban_py_ext.django.schema import FIX, schema_state

    try:
        state = schema_state(alias)
    except DatabaseError as error:
        detail = " ".join(str(error).split())
        return [checks.Warning(f"cannot inspect the Oban schema: {detail}", id="oban.W002")]
    if state.version == 0:
        applied = MigrationRecorder(connections[alias]).applied_migrations()
        if ("oban_py", "0001_install_schema") not in applied:
            return []  # migrate is about to install it
    problem = state.problem
    if problem is None:
        return []
    # A warning, not an error: an error would stop `migrate` from running the project's own
    # migrations. `manage.py oban start` refuses to start on the same condition.
    return [checks.Warning(problem, hint=FIX, id="oban.W001")]
