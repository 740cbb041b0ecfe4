"""The unmanaged ``Job`` model's state, so projects never need to make migrations for this app."""

from __future__ import annotations

from django.db import migrations, models

from oban_py_ext.django.models import table


class Migration(migrations.Migration):
    dependencies = [("oban_py", "0001_install_schema")]
    operations = [
        migrations.CreateModel(
            name="Job",
            fields=[("id", models.BigAutoField(primary_key=True, serialize=False))],
            options={
                "managed": False,
                "db_table": table(),
                "ordering": ("-id",),
                "verbose_name": "job",
            },
        )
    ]
