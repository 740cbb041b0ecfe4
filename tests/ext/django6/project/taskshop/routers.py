"""Sends Oban's ``Job`` model to the ``jobs`` database, everything else to ``default``."""

from typing import Any


class JobsRouter:
    def _for(self, model: Any) -> str | None:
        return "jobs" if model._meta.app_label == "oban_py" else None

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return self._for(model)

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return self._for(model)

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return (db == "jobs") == (app_label == "oban_py")
