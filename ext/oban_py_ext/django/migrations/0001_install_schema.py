"""Install the Oban schema in ``OBAN["prefix"]`` unless a node (Elixir or Python) already did.

Upgrading an existing older schema is ``manage.py oban migrate``; removing it is
``oban-py uninstall``, so this migration cannot be reversed.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from oban_py.schema import install_sql
from oban_py_ext.django import conf


def install(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    prefix = conf.prefix()
    quoted = '"' + prefix.replace('"', '""') + '".oban_jobs'
    with schema_editor.connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", [quoted])
        if cur.fetchone()[0]:
            return
        # No params: psycopg sends the script as is (it holds no placeholders).
        cur.execute(install_sql(prefix))


class Migration(migrations.Migration):
    initial = True
    operations = [migrations.RunPython(install, elidable=False)]
