"""The Django app of the oban_py integration (label ``oban_py``)."""

from __future__ import annotations

from django.apps import AppConfig

from oban_py.client.core import use_sync_hint


class ObanConfig(AppConfig):
    name = "oban_py_ext.django"
    label = "oban_py"
    verbose_name = "Oban jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registering checks is the import's side effect, as for Django's own apps.
        from oban_py_ext.django import checks, connections

        del checks
        connections.install()
        # Django's sync path is oban_py_ext.django.enqueue, not Worker.enqueue_sync (which
        # needs a Client of its own): the error of Worker.enqueue in a sync view says so.
        use_sync_hint(
            "enqueue",
            "oban_py_ext.django.enqueue(Worker.new(args)) (on Django's connection, in its"
            " transaction; Worker.enqueue_sync() needs an oban_py Client of its own)",
        )
