"""The ``OBAN`` Django setting: any ``oban_py.Config`` field, plus ``database`` (the alias whose
connection enqueues and whose credentials the node uses when ``dsn`` is absent).

    OBAN = {"queues": {"default": 10, "mailers": 5}, "prefix": "public"}
"""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import make_conninfo

from oban_py import Config

_OWN_KEYS = ("database", "workers")


def options() -> dict[str, Any]:
    from django.conf import settings

    return dict(getattr(settings, "OBAN", {}) or {})


def database() -> str:
    return str(options().get("database", "default"))


def prefix() -> str:
    return str(options().get("prefix", "public"))


def dsn() -> str:
    """``OBAN["dsn"]``, else a DSN built from the Django database's settings."""
    given = options().get("dsn")
    if given:
        return str(given)
    from django.db import connections

    db = connections[database()].settings_dict
    params = {
        "dbname": db.get("NAME"),
        "user": db.get("USER"),
        "password": db.get("PASSWORD"),
        "host": db.get("HOST"),
        "port": db.get("PORT"),
    }
    return make_conninfo(**{k: str(v) for k, v in params.items() if v})


def config(**overrides: Any) -> Config:
    """The node's ``Config`` from the settings."""
    values = {k: v for k, v in options().items() if k not in _OWN_KEYS}
    values["dsn"] = dsn()
    values.update(overrides)
    return Config(**values)
