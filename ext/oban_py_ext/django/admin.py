"""A read-only admin of jobs with retry and cancel actions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from oban_py_ext.django.actions import cancel_jobs, retry_jobs
from oban_py_ext.django.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "worker", "queue", "state", "attempt", "max_attempts", "scheduled_at")
    list_filter = ("state", "queue")
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
        count = retry_jobs(list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} job(s) retried", messages.SUCCESS)

    @admin.action(description="Cancel selected jobs", permissions=["manage"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        count = cancel_jobs(list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} job(s) cancelled", messages.SUCCESS)
