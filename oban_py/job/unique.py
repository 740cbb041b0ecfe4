"""Unique-job options and the parameters of the duplicate lookup, with Oban 2.23 OSS semantics.

A unique job is inserted only when no job with the same *fields* exists in one of the *states*
within the *period*. As in Elixir's Basic engine, ``args`` and ``meta`` are compared by JSONB
containment: with no ``keys`` the whole map must be equal, with ``keys`` only those keys must
match. ``queue`` and ``worker`` are compared by equality.

Concurrent inserts are serialised by transaction-scoped advisory locks on a hash of the prefix
and the compared values (``lock_key``), taken as ``oban_py.insert.planner`` describes. Elixir
derives its lock key from ``:erlang.phash2`` of Elixir terms, which cannot be reproduced here,
so a Python and an Elixir insert of the same unique job in the same instant are only as unique
as the shared lookup makes them (see docs/enqueueing.md).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, field_validator

from oban_py.job import jsonb

#: Every job state, in Elixir's enum order.
ALL_STATES: tuple[str, ...] = (
    "available",
    "suspended",
    "scheduled",
    "executing",
    "retryable",
    "completed",
    "discarded",
    "cancelled",
)

#: Oban's named state groups (2.20+, with ``suspended`` since 2.21).
STATE_GROUPS: dict[str, tuple[str, ...]] = {
    "all": ALL_STATES,
    "incomplete": ("available", "suspended", "scheduled", "executing", "retryable"),
    "scheduled": ("scheduled",),
    "successful": ("available", "suspended", "scheduled", "executing", "retryable", "completed"),
}

UNIQUE_FIELDS = ("args", "meta", "queue", "worker")
REPLACE_FIELDS = (
    "args",
    "max_attempts",
    "meta",
    "priority",
    "queue",
    "scheduled_at",
    "tags",
    "worker",
)

UniqueField = Literal["args", "meta", "queue", "worker"]


class Unique(BaseModel):
    """How uniqueness is computed for a job (``unique=`` on a job or worker).

    ``period`` is seconds (or a ``timedelta``); ``None`` or ``"infinity"`` means forever.
    ``states`` is a group name (``"successful"``, the default; ``"incomplete"``, ``"scheduled"``,
    ``"all"``) or an explicit list of states.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fields: tuple[UniqueField, ...] = ("args", "queue", "worker")
    keys: tuple[str, ...] = ()
    period: float | None = 60.0
    states: tuple[str, ...] = STATE_GROUPS["successful"]
    timestamp: Literal["inserted_at", "scheduled_at"] = "inserted_at"

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = (value,)
        if not value:
            raise ValueError("unique fields must name at least one of args, meta, queue, worker")
        return tuple(dict.fromkeys(value))

    @field_validator("keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return tuple(str(k) for k in value)

    @field_validator("period", mode="before")
    @classmethod
    def _period(cls, value: Any) -> Any:
        if value is None or value == "infinity" or value == math.inf:
            return None
        if isinstance(value, timedelta):
            value = value.total_seconds()
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"unique period must be positive seconds or 'infinity', got {value!r}")
        return float(value)

    @field_validator("states", mode="before")
    @classmethod
    def _states(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value not in STATE_GROUPS:
                groups = ", ".join(STATE_GROUPS)
                raise ValueError(f"unknown unique state group {value!r} (expected one of {groups})")
            return STATE_GROUPS[value]
        states = tuple(dict.fromkeys(value))
        unknown = [s for s in states if s not in ALL_STATES]
        if unknown or not states:
            raise ValueError(f"unique states must be job states, got {list(value)!r}")
        return states

    @classmethod
    def coerce(cls, value: Any) -> Unique | None:
        """``True`` → forever (Elixir's ``unique: true``); a mapping → options; None/False."""
        if value is None or value is False:
            return None
        if value is True:
            return cls(period=None)
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.model_validate(dict(value))
        raise ValueError("unique must be True, a mapping of options or a Unique")


def coerce_replace(value: Any) -> dict[str, tuple[str, ...]] | None:
    """``replace`` by state, as Elixir's ``replace: [scheduled: [:scheduled_at]]``.

    A plain list of fields applies to every state.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        by_state = {str(k): _replace_fields(v) for k, v in value.items()}
    elif isinstance(value, Iterable) and not isinstance(value, str):
        fields = _replace_fields(value)
        by_state = dict.fromkeys(ALL_STATES, fields)
    else:
        raise ValueError("replace must map states to lists of fields")
    unknown = [s for s in by_state if s not in ALL_STATES]
    if unknown:
        raise ValueError(f"replace keys must be job states, got {unknown!r}")
    return by_state


def _replace_fields(fields: Any) -> tuple[str, ...]:
    if isinstance(fields, str):
        fields = (fields,)
    result = tuple(dict.fromkeys(str(f) for f in fields))
    unknown = [f for f in result if f not in REPLACE_FIELDS]
    if unknown:
        raise ValueError(f"replace fields must be among {', '.join(REPLACE_FIELDS)}: {unknown!r}")
    return result


def compared_value(unique: Unique, values: Mapping[str, Any], field: str) -> dict[str, Any]:
    """The part of ``args``/``meta`` the lookup compares: all of it, or only ``keys``."""
    data: dict[str, Any] = values.get(field) or {}
    if not unique.keys:
        return data
    return {k: data[k] for k in unique.keys if k in data}


def lock_key(prefix: str, unique: Unique, values: Mapping[str, Any]) -> int:
    """A stable signed 64-bit advisory-lock key for the compared values under ``prefix``."""
    parts: list[Any] = [prefix]
    for field in sorted(unique.fields):
        if field in ("args", "meta"):
            parts.append([field, compared_value(unique, values, field)])
        else:
            parts.append([field, values.get(field)])
    encoded = jsonb.dumps(parts, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.blake2b(encoded, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
