"""The Django app of the oban_py integration (label ``oban_py``)."""

from __future__ import annotations

from django.apps import AppConfig


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
