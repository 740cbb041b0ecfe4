"""System checks (``manage.py check``, and before ``migrate`` and ``oban start``): bad ``OBAN``
settings, a database that is not PostgreSQL, and (with ``--database``) a schema a node cannot
run on."""

from __future__ import annotations

import importlib
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
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return [
            checks.Error(
                f"settings.OBAN must be a dict, not {type(raw).__name__}",
                hint='e.g. OBAN = {"queues": {"default": 10}}',
                id="oban.E001",
            )
        ]
    found: list[Any] = []
    values = {k: v for k, v in raw.items() if k not in conf.OWN_KEYS}
    try:
        # The DSN is checked on its own below; a placeholder keeps Config from asking for it.
        Config(**{"dsn": "postgresql://", **values})
    except ValidationError as error:
        found.append(
            checks.Error(
                f"invalid OBAN settings: {_problems(error)}",
                hint="OBAN takes the fields of oban_py.Config, plus 'database', 'workers' and"
                " 'other_database'.",
                id="oban.E001",
            )
        )
    workers = raw.get("workers", [])
    if not isinstance(workers, list | tuple) or not all(isinstance(w, str) for w in workers):
        found.append(checks.Error("OBAN['workers'] must be a list of module names", id="oban.E001"))
    else:
        found.extend(_unimportable(workers))
    if raw.get("other_database", "on_commit") not in conf.OTHER_DATABASE:
        found.append(
            checks.Error(
                f"OBAN['other_database'] is {raw['other_database']!r}, not one of"
                f" {', '.join(map(repr, conf.OTHER_DATABASE))}",
                id="oban.E001",
            )
        )
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


def _unimportable(modules: Sequence[str]) -> list[Any]:
    """An error per ``OBAN["workers"]`` module ``manage.py oban start`` could not import."""
    found = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # whatever importing it raises, start would stop on it
            found.append(
                checks.Error(
                    f"OBAN['workers'] names {module!r}, which cannot be imported:"
                    f" {type(error).__name__}: {error}",
                    hint="manage.py oban start imports every module of OBAN['workers'].",
                    id="oban.E005",
                )
            )
    return found


@checks.register("oban", checks.Tags.database)
def check_schema(databases: Sequence[str] | None = None, **kwargs: Any) -> list[Any]:
    from django.conf import settings
    from django.db import DatabaseError, connections
    from django.db.migrations.recorder import MigrationRecorder

    if not isinstance(getattr(settings, "OBAN", None) or {}, dict):
        return []  # check_settings says so
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
