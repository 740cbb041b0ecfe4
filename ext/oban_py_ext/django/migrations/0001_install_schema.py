"""Install the Oban schema in ``OBAN["prefix"]`` unless a node (Elixir or Python) already did.

One SQL statement, so ``manage.py sqlmigrate oban_py 0001`` prints what runs. Upgrading an
existing older schema is ``manage.py oban migrate`` (the ``oban.W001`` check says when it is
needed); removing it is ``manage.py oban uninstall``, so this migration cannot be reversed.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import migrations

from oban_py.schema import install_sql
from oban_py_ext.django import conf


def _guarded_install(prefix: str) -> str:
    table = '"' + prefix.replace('"', '""') + '".oban_jobs'
    script = install_sql(prefix)
    tag = "$oban_install$"
    assert tag not in script
    return (
        "DO $oban_guard$ BEGIN\n"
        f"IF to_regclass('{table.replace(chr(39), chr(39) * 2)}') IS NULL THEN\n"
        f"EXECUTE {tag}\n{script}{tag};\n"
        "END IF;\n"
        "END $oban_guard$"
    )


class InstallSchema(migrations.RunSQL):
    """The install script, on the ``OBAN["database"]`` alias only, which must be PostgreSQL."""

    def __init__(self) -> None:
        super().__init__([_guarded_install(conf.prefix())], elidable=False)

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        connection = schema_editor.connection
        if connection.alias != conf.database():
            return
        if connection.vendor != "postgresql":
            raise ImproperlyConfigured(
                f"oban_py needs PostgreSQL: DATABASES[{connection.alias!r}] uses"
                f" {connection.vendor}"
            )
        super().database_forwards(app_label, schema_editor, from_state, to_state)

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (self.__class__.__name__, [], {})


class Migration(migrations.Migration):
    initial = True
    operations = [InstallSchema()]
