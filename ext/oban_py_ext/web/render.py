"""Templates and the helpers they use to show stored values.

Autoescaping is on for every template: a value read from the database is text wherever it
lands (an args string holding ``<script>`` shows as those characters). The only markup not
written by a template is the SVG of ``charts``, which escapes its own labels.
"""

from __future__ import annotations

import pprint
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from jinja2 import Environment, PackageLoader, StrictUndefined

from oban_py.job import jsonb
from oban_py.job.terms import TermError, decode_recorded
from oban_py_ext.web.reads import Amount


def as_json(value: Any) -> str:
    """Stored JSON pretty-printed, wide integers and huge numbers exact."""
    try:
        return jsonb.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return repr(value)


def as_json_line(value: Any, limit: int = 120) -> str:
    try:
        text = jsonb.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timestamp(value: datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def ago(value: datetime | None) -> str:
    """How long ago (``3 min ago``) or how soon (``in 2 h``) a naive-UTC timestamp is."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    seconds = (datetime.now(UTC) - value).total_seconds()
    span = abs(seconds)
    if span < 60:
        text = f"{span:.0f} s"
    elif span < 3600:
        text = f"{span / 60:.0f} min"
    elif span < 86400:
        text = f"{span / 3600:.0f} h"
    else:
        text = f"{span / 86400:.0f} d"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def recorded(meta: Any) -> tuple[bool, str] | None:
    """The recorded result in ``meta.return`` decoded from Erlang terms: (ok, text), or None."""
    if not isinstance(meta, dict) or "return" not in meta:
        return None
    value = meta["return"]
    if not isinstance(value, str):
        return False, f"not a recorded term: {as_json_line(value)}"
    try:
        return True, pprint.pformat(decode_recorded(value), width=100, sort_dicts=False)
    except (TermError, ValueError, RecursionError) as error:
        return False, f"cannot decode the recorded term: {error}"


def number(value: int | float | Amount) -> str:
    """With thousands separators: 1,234,567; an estimate to two significant digits: ≈1.2M."""
    if not isinstance(value, Amount):
        return f"{value:,}"
    if not value.estimated:
        return f"{value.value:,}"
    rounded = float(f"{value.value:.2g}")
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if rounded >= size:
            return f"≈{rounded / size:g}{suffix}"
    return f"≈{rounded:g}"


def path_part(value: str) -> str:
    """A value placed in a URL path (queue names may hold any character)."""
    return quote(value, safe="")


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("oban_py_ext.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        json=as_json,
        json_line=as_json_line,
        ts=timestamp,
        ago=ago,
        pathpart=path_part,
        num=number,
    )
    env.globals.update(recorded=recorded)
    return env
