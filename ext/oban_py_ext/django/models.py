"""``Job``: a read-only view of ``oban_jobs`` for the admin and queries.

Writes go through ``enqueue`` and the admin actions (the library's own SQL), never ``save()``:
Elixir and Python nodes own these rows. The table is the schema migration's (``0001``), never
created or altered from this model; the model is nonetheless *managed* so that Django's
``flush`` (and so ``TransactionTestCase`` between tests) empties it like any app's table.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models

from oban_py_ext.django import conf
from oban_py_ext.django.fields import UTCDateTimeField

STATES = [
    (s, s)
    for s in (
        "available",
        "scheduled",
        "suspended",
        "executing",
        "retryable",
        "completed",
        "discarded",
        "cancelled",
    )
]


def table() -> str:
    # Django quotes db_table as one identifier; a schema-qualified name needs this form.
    prefix = conf.prefix()
    return "oban_jobs" if prefix == "public" else f'{prefix}"."oban_jobs'


class Job(models.Model):
    id = models.BigAutoField(primary_key=True)
    state = models.CharField(max_length=16, choices=STATES)
    queue = models.TextField()
    worker = models.TextField()
    args = models.JSONField(default=dict)
    meta = models.JSONField(default=dict)
    errors = ArrayField(models.JSONField(), default=list)
    tags = ArrayField(models.TextField(), default=list)
    attempt = models.IntegerField()
    max_attempts = models.IntegerField()
    priority = models.IntegerField()
    attempted_by = ArrayField(models.TextField(), null=True)
    inserted_at = UTCDateTimeField()
    scheduled_at = UTCDateTimeField()
    attempted_at = UTCDateTimeField(null=True)
    completed_at = UTCDateTimeField(null=True)
    discarded_at = UTCDateTimeField(null=True)
    cancelled_at = UTCDateTimeField(null=True)

    class Meta:
        db_table = table()
        ordering = ("-id",)
        verbose_name = "job"
        # Rows are never added or deleted here; retry and cancel need change_job.
        default_permissions = ("view", "change")

    def __str__(self) -> str:
        return f"{self.worker} #{self.id} ({self.state})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("oban jobs are read-only here: use enqueue() and the admin actions")

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("oban jobs are read-only here: use the admin actions")
