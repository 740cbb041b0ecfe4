"""``UTCDateTimeField``: Oban's ``timestamp without time zone`` columns, which hold UTC.

Django reads such a column as a naive datetime and, under ``USE_TZ = True``, would show it
unconverted in the user's ``TIME_ZONE``; this field reads it as aware UTC (then the admin and
templates convert it as for any aware value) and writes aware values back as naive UTC, so
filters and lookups compare like with like.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import models


class UTCDateTimeField(models.DateTimeField):  # type: ignore[type-arg]
    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        from django.conf import settings

        if isinstance(value, datetime) and value.tzinfo is None and settings.USE_TZ:
            return value.replace(tzinfo=UTC)
        return value

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def db_type(self, connection: Any) -> str:
        return "timestamp without time zone"
