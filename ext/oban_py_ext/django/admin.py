"""A read-only admin of jobs with retry and cancel actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from oban_py_ext.django.actions import cancel_jobs, queue_names, retry_jobs
from oban_py_ext.django.models import Job


class QueueFilter(admin.SimpleListFilter):
    """Queues listed from the index, not by ``SELECT DISTINCT`` over every row."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in queue_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        return queryset.filter(queue=value) if value else queryset


def _report(
    admin_: admin.ModelAdmin[Job], request: HttpRequest, done: int, asked: int, verb: str, why: str
) -> None:
    if done == asked:
        admin_.message_user(request, f"{done} job(s) {verb}", messages.SUCCESS)
    elif done == 0:
        admin_.message_user(request, f"No job {verb}: {why}", messages.WARNING)
    else:
        admin_.message_user(
            request,
            f"{done} of {asked} job(s) {verb}; the others were skipped: {why}",
            messages.WARNING,
        )


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "worker", "queue", "state", "attempt", "max_attempts", "scheduled_at")
    list_filter = ("state", QueueFilter)
    search_fields = ("worker",)
    actions = ("retry", "cancel")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_manage_permission(self, request: HttpRequest) -> bool:
        # The rows stay read-only, but retry and cancel change jobs: ask for change_job.
        return bool(getattr(request.user, "has_perm", lambda _: False)("oban_py.change_job"))

    @admin.action(description="Retry selected jobs", permissions=["manage"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        why = "available and executing jobs are not retried"
        _report(self, request, retry_jobs(ids), len(ids), "retried", why)

    @admin.action(description="Cancel selected jobs", permissions=["manage"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        why = "completed, discarded and cancelled jobs are finished already"
        _report(self, request, cancel_jobs(ids), len(ids), "cancelled", why)
