"""The ``OBAN`` Django setting: any ``oban_py.Config`` field, plus ``database`` (the alias whose
connection enqueues and whose credentials the node uses when ``dsn`` is absent) and ``workers``
(modules ``manage.py oban start`` imports), and ``other_database`` (``"on_commit"`` or
``"raise"``: ``enqueue`` inside another database's ``atomic()`` block, see
``oban_py_ext.django``).

    OBAN = {"queues": {"default": 10, "mailers": 5}, "prefix": "public"}
"""

from __future__ import annotations

from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from oban_py import Config

OWN_KEYS = ("database", "workers", "other_database")
#: What ``enqueue`` does inside an ``atomic()`` block of a database the jobs do not go to.
OTHER_DATABASE = ("on_commit", "raise")
#: Keys of ``get_connection_params()`` that are psycopg arguments, not libpq options: the
#: node's connections set their own (row factory, adapters, prepared statements).
_PSYCOPG_ONLY = ("cursor_factory", "context", "prepare_threshold")


def options() -> dict[str, Any]:
    from django.conf import settings

    raw = getattr(settings, "OBAN", None) or {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"settings.OBAN must be a dict, not {type(raw).__name__}")
    return dict(raw)


def database() -> str:
    return str(options().get("database", "default"))


def prefix() -> str:
    return str(options().get("prefix", "public"))


def dsn(using: str | None = None) -> str:
    """``OBAN["dsn"]``, else the DSN of the Django database: every libpq option of its
    ``OPTIONS`` (``sslmode``, ``sslrootcert``, ``application_name``, ``options``, ``service``,
    ``target_session_attrs``...) is carried over, and anything libpq does not know makes this
    raise ``ImproperlyConfigured`` rather than connect without it."""
    given = options().get("dsn")
    if given and using is None:
        return str(given)
    from django.db import connections

    alias = using or database()
    conn = connections[alias]
    if conn.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"oban_py needs PostgreSQL: DATABASES[{alias!r}] uses {conn.vendor}"
        )
    # Django's own translation of NAME/USER/.../OPTIONS into connection arguments, so the node
    # connects exactly as Django does (service files and NAME=None included).
    params: dict[str, Any] = dict(conn.get_connection_params())
    for key in _PSYCOPG_ONLY:
        params.pop(key, None)
    role = conn.settings_dict.get("OPTIONS", {}).get("assume_role")
    if role:
        # Django runs SET ROLE after connecting; a startup option does the same for the node.
        escaped = str(role).replace("\\", "\\\\").replace(" ", "\\ ")
        params["options"] = f"{params.get('options', '')} -c role={escaped}".strip()
    wanted = {k: str(v) for k, v in params.items() if v is not None}
    try:
        built = make_conninfo(**wanted)
        # libpq reads the DSN as a C string: whatever it would not read back (a value cut at a
        # NUL, say, and every option after it) must stop the node, not be dropped.
        if conninfo_to_dict(built) != wanted:
            raise psycopg.ProgrammingError("libpq does not read the options back as given")
    except (psycopg.ProgrammingError, UnicodeEncodeError) as error:
        bad = ", ".join(_refused(wanted)) or "one of them"
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}] holds an option libpq cannot take ({bad}), so the Oban"
            f" node cannot connect as Django does: {' '.join(str(error).split())}."
            " Fix the option, or give OBAN['dsn'] explicitly."
        ) from None
    return built


def _refused(wanted: dict[str, str]) -> list[str]:
    """The options libpq refuses or would not read back, each tried on its own."""
    bad = []
    for key, value in sorted(wanted.items()):
        try:
            if conninfo_to_dict(make_conninfo(**{key: value})) != {key: value}:
                bad.append(key)
        except (psycopg.ProgrammingError, UnicodeEncodeError):
            bad.append(key)
    return bad


def config(**overrides: Any) -> Config:
    """The node's ``Config`` from the settings."""
    values = {k: v for k, v in options().items() if k not in OWN_KEYS}
    values["dsn"] = dsn()
    values.update(overrides)
    return Config(**values)
