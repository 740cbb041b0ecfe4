"""JSON exactly as ``jsonb`` holds it: integers of any width and numbers beyond double range.

Elixir writes args and meta with integers of any size (``123456789012345678901234567890`` is a
plain Elixir integer), and SQL can store ``1e400`` in a ``jsonb`` number. orjson, fast as it is,
reads integers wider than 64 bits as floats (silently losing digits) and refuses numbers beyond
double range. ``loads`` keeps orjson's speed for the usual document and falls back to the
standard library's exact parser only when a document may hold such a number: integers come back
exact, and a number no double can hold comes back as a ``Decimal`` instead of raising.

``dumps`` writes both kinds back unchanged, so a row read and written again keeps its numbers.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

import orjson

# A run of 19 digits is the shortest that can leave orjson's exact range (below -2**63 or above
# 2**64 - 1). Matching digits inside strings too only costs the slow path, never exactness.
_WIDE = re.compile(rb"[0-9]{19}")
_I64 = (-(2**63), 2**64 - 1)


def _number(text: str) -> float | Decimal:
    value = float(text)
    return value if math.isfinite(value) else Decimal(text)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse one JSON document; wide integers exact, out-of-range numbers as ``Decimal``."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _WIDE.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # out-of-range numbers; anything truly invalid fails below as well
    return json.loads(raw, parse_float=_number)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _widen(value: Any) -> Any:
    # orjson refuses integers beyond 64 bits before it consults ``default``: hand those over as
    # ready-made JSON fragments.
    if isinstance(value, dict):
        return {k: _widen(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_widen(v) for v in value]
    if type(value) is int and not _I64[0] <= value <= _I64[1]:
        return orjson.Fragment(str(value).encode())
    return value


def dumps(value: Any, option: int | None = None) -> bytes:
    """Serialise ``value``; integers of any width and ``Decimal`` numbers are written exactly."""
    try:
        return orjson.dumps(value, default=_default, option=option)
    except TypeError as error:
        if "64-bit" not in str(error):
            raise
        return orjson.dumps(_widen(value), default=_default, option=option)


def dumps_str(value: Any) -> str:
    """``dumps`` as text, for SQL parameters."""
    return dumps(value).decode()
