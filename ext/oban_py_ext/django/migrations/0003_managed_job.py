"""``Job`` becomes managed (so ``flush`` and ``TransactionTestCase`` empty ``oban_jobs``) with
view/change permissions only and aware UTC timestamps. State only: the table is 0001's."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import migrations, models

from oban_py_ext.django.fields import UTCDateTimeField
from oban_py_ext.django.models import STATES

OPTIONS = {"default_permissions": ("view", "change"), "ordering": ("-id",), "verbose_name": "job"}

FIELDS: list[tuple[str, models.Field]] = [  # type: ignore[type-arg]
    ("state", models.CharField(max_length=16, choices=STATES)),
    ("queue", models.TextField()),
    ("worker", models.TextField()),
    ("args", models.JSONField(default=dict)),
    ("meta", models.JSONField(default=dict)),
    ("errors", ArrayField(models.JSONField(), default=list)),
    ("tags", ArrayField(models.TextField(), default=list)),
    ("attempt", models.IntegerField()),
    ("max_attempts", models.IntegerField()),
    ("priority", models.IntegerField()),
    ("attempted_by", ArrayField(models.TextField(), null=True)),
    ("inserted_at", UTCDateTimeField()),
    ("scheduled_at", UTCDateTimeField()),
    ("attempted_at", UTCDateTimeField(null=True)),
    ("completed_at", UTCDateTimeField(null=True)),
    ("discarded_at", UTCDateTimeField(null=True)),
    ("cancelled_at", UTCDateTimeField(null=True)),
]

STATE = [
    migrations.AlterModelOptions(name="job", options=OPTIONS),
    *(migrations.AddField(model_name="job", name=name, field=field) for name, field in FIELDS),
]


class Migration(migrations.Migration):
    dependencies = [("oban_py", "0002_job")]
    operations = [migrations.SeparateDatabaseAndState(state_operations=STATE)]
