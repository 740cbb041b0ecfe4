"""The ``errors`` entries Elixir Oban writes, and the library's exceptions.

Each failed attempt appends ``{"at": ..., "attempt": n, "error": text}`` to a job's ``errors``
(``lib/oban/job.ex``; compat_fixtures ``jobs/retryable_raise.json``): ``at`` is ISO-8601 UTC with
microseconds and a ``Z``. ``error`` is free text; Elixir writes ``Exception.format/3`` output,
whose first line is ``** (Module) message``. We keep that first line's shape so Oban Web and
Elixir code matching on it see the same thing, followed by the Python traceback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import os
import re
import traceback
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, overload

from oban_py.job.terms import Atom, BitString, ImproperList, TermError, order_key


class ObanError(Exception):
    """Base class of this library's exceptions."""


class SchemaError(ObanError):
    """The Oban schema in the database is missing or older than this library needs."""


class UnknownWorker(ObanError, LookupError):
    """No worker is registered (or importable) under a job's worker name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown worker: {name}")
        self.name = name


class InvalidArgs(ObanError, ValueError):
    """A job's stored args do not satisfy its worker's ``args_model``."""


class InstanceNotFound(ObanError, LookupError):
    """No ``Client``/``Oban`` instance is registered under the requested name."""


class DatabaseUnavailable(ObanError, ConnectionError):
    """The database could not be reached or refused the connection (host, port, auth)."""


class JobNotExecuting(ObanError):
    """``complete_in`` found the job no longer in this attempt (cancelled, rescued, already
    completed): raised inside the caller's transaction so that its effect rolls back too."""


# ------------------------------------------------------------------------------ errors entries


def format_at(at: datetime) -> str:
    """``2026-11-23T09:17:07.101730Z``: how Jason writes an Elixir ``DateTime`` in UTC."""
    if at.tzinfo is None:
        raise ValueError("errors timestamps must be timezone-aware")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


@overload
def error_entry(attempt: int, error: str, at: datetime | None = None) -> dict[str, Any]: ...
@overload
def error_entry(attempt: int, error: datetime, at: str) -> dict[str, Any]: ...
def error_entry(
    attempt: int, error: str | datetime, at: str | datetime | None = None
) -> dict[str, Any]:
    """One ``errors`` entry: ``{"at", "attempt", "error"}`` as Elixir writes it.

    ``at`` defaults to now. ``error_entry(attempt, at, text)`` is accepted as well.
    """
    text, when = (at, error) if isinstance(error, datetime) else (error, at)
    if not isinstance(text, str) or isinstance(when, str):
        raise TypeError("error_entry needs an error text and an optional datetime")
    return {"at": format_at(when or datetime.now(UTC)), "attempt": attempt, "error": text}


def _exception_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def safe_str(value: Any) -> str:
    """``str(value)``, or its ``repr``, or a placeholder: a worker's ``__str__`` may raise."""
    for render in (str, repr):
        try:
            text = render(value)
            if isinstance(text, str):
                return text
        except BaseException:  # whatever a broken __str__ raises, try the next
            pass
    return f"<unprintable {type(value).__name__}>"


def safe_repr(value: Any) -> str:
    """``repr(value)``, or a text saying it failed: a worker's ``__repr__`` may raise."""
    try:
        text = repr(value)
    except BaseException as error:  # whatever a broken __repr__ raises
        return f"<{type(value).__name__} (its __repr__ raised {_exception_name(error)})>"
    if isinstance(text, str):
        return text
    return f"<{type(value).__name__} (its __repr__ returned no str)>"


#: Frames of these directories lead into a worker's code; a stored trace starts at the worker,
#: as Elixir's entries start at ``perform/1``.
_LIBRARY_DIRS = (
    # The whole oban_py package (this file is oban_py/job/errors.py), then the standard library's.
    os.path.dirname(os.path.dirname(__file__)) + os.sep,
    *(
        os.path.dirname(path) + os.sep
        for path in (asyncio.__file__, concurrent.futures.__file__, contextlib.__file__)
    ),
)


def _worker_frames(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        tb = tb.tb_next
    return tb


def _format(exc: BaseException, seen: set[int]) -> str:
    seen.add(id(exc))
    message = safe_str(exc)
    name = _exception_name(exc)
    head = f"** ({name}) {message}" if message else f"** ({name})"
    try:
        frames = "".join(traceback.format_tb(_worker_frames(exc.__traceback__)))
    except Exception:
        frames = ""
    chained = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if chained is not None and id(chained) not in seen:
        frames += f"caused by: {_format(chained, seen)}"
    return f"{head}\n{frames}" if frames else head


def format_exception(exc: BaseException) -> str:
    """``** (ValueError) boom`` then the worker's frames, like Elixir's ``Exception.format/3``.

    A ``BaseException`` that is no ``Exception`` (``SystemExit``, ``KeyboardInterrupt``...) is
    wrapped as Elixir wraps exits and throws: ``** (Oban.CrashError) ** (SystemExit) 2``.
    Never raises, whatever the exception's ``__str__`` does.
    """
    text = _format(exc, set())
    if not isinstance(exc, Exception):
        text = f"** (Oban.CrashError) {text}"
    return text


#: Longest ``error`` text stored per entry; longer ones keep their head and tail.
MAX_ERROR_TEXT = 65_536
_TAIL = 8_192


def storable(text: str) -> str:
    """``text`` as ``jsonb`` and ``text`` columns accept it, whatever a worker put in it.

    NUL becomes ``\\0`` (as Elixir's inspect writes it), a lone surrogate (a bad file name from
    ``os.fsdecode``) its ``\\udcff`` escape, and a text longer than ``MAX_ERROR_TEXT`` keeps its
    head and tail around a note of how much was cut.
    """
    if not isinstance(text, str):
        text = safe_str(text)
    if "\x00" in text:
        text = text.replace("\x00", "\\0")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_ERROR_TEXT:
        cut = len(text) - MAX_ERROR_TEXT
        head = MAX_ERROR_TEXT - _TAIL
        text = f"{text[:head]}\n... ({cut} characters cut) ...\n{text[-_TAIL:]}"
    return text


def format_reason(worker_name: str, reason: Any) -> str:
    """``** (Oban.PerformError) <Worker> failed with <inspect(reason)>``.

    ``reason`` is the term Elixir would inspect, e.g. ``(Atom("error"), "bad")`` gives
    ``{:error, "bad"}``; a ``str`` is inspected as an Elixir string (quoted). Never raises,
    whatever the reason's ``__repr__`` (or its ordering, or its elements') does.
    """
    try:
        text = inspect(reason)
    except BaseException:  # a term inspect cannot walk (a key's ``__lt__`` that raises...)
        text = safe_repr(reason)
    return f"** (Oban.PerformError) {worker_name} failed with {text}"


def format_cancel(worker_name: str, reason: Any) -> str:
    """The entry text of a worker returning ``Cancel(reason)``: ``{:cancel, reason}``."""
    return format_reason(worker_name, (Atom("cancel"), reason))


def format_cancel_shutdown(worker_name: str) -> str:
    """The entry text of a job killed by a cancel: ``{:cancel, :shutdown}``."""
    return format_reason(worker_name, (Atom("cancel"), Atom("shutdown")))


def format_timeout(worker_name: str, ms: int | float) -> str:
    """``** (Oban.TimeoutError) <Worker> timed out after <ms>ms``."""
    return f"** (Oban.TimeoutError) {worker_name} timed out after {round(ms)}ms"


# ------------------------------------------------------------------------- Elixir's inspect/1

_PLAIN_ATOM = re.compile(r"^[A-Za-z_\u00c0-\u024f][\w\u00c0-\u024f@]*[?!]?$")
_ALIAS = re.compile(r"^Elixir(\.[A-Z]\w*)+$")
# fmt: off
_OPERATORS = frozenset((
    "+", "-", "*", "/", "==", "!=", "===", "!==", "<", ">", "<=", ">=", "&&", "||", "!", "<>",
    "++", "--", "|>", "=~", "..", "...", "<<<", ">>>", "~~~", "&", "|", "::", "\\\\", "<-",
    "->", "=>", "@", "^", "%",
))
# fmt: on
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\f": "\\f",
    "\b": "\\b",
    "\v": "\\v",
    "\a": "\\a",
    "\x1b": "\\e",
    "\x00": "\\0",
}


def _inspect_string(text: str, quote: str = '"') -> str:
    out = []
    for i, ch in enumerate(text):
        if ch == quote:
            out.append("\\" + ch)
        elif ch == "#" and text[i + 1 : i + 2] == "{":
            out.append("\\#")
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif not ch.isprintable():
            out.append(f"\\u{{{ord(ch):X}}}" if ord(ch) > 0xFF else f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return quote + "".join(out) + quote


def _inspect_atom(name: str) -> str:
    if name in ("nil", "true", "false"):
        return name
    if _ALIAS.match(name):
        return name.removeprefix("Elixir.")
    if _PLAIN_ATOM.match(name) or name in _OPERATORS:
        return ":" + name
    return ":" + _inspect_string(name)


def _inspect_float(value: float) -> str:
    if not math.isfinite(value):
        return repr(value)
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + exponent  # decimal point position within the digit string
    magnitude = abs(value)
    if value == 0 or 1e-4 <= magnitude < 1e21:
        if point <= 0:
            body = "0." + "0" * -point + text
        elif point >= len(text):
            body = text + "0" * (point - len(text)) + ".0"
        else:
            body = text[:point] + "." + text[point:]
    else:
        body = f"{text[0]}.{text[1:] or '0'}e{point - 1}"
    return ("-" if sign else "") + body


def _printable_charlist(items: list[Any]) -> bool:
    return bool(items) and all(
        type(i) is int and (32 <= i <= 126 or i in (7, 8, 9, 10, 11, 12, 13, 27)) for i in items
    )


def inspect(value: Any) -> str:
    """Render a Python value as Elixir's ``inspect/1`` renders the matching term.

    Uses the mapping of ``oban_py.job.terms`` (``None`` is ``nil``, ``str`` a string, ``Atom`` an
    atom, ``dict`` a map...). Other Python objects fall back to ``repr``.
    """
    if value is None or value is True or value is False:
        return {None: "nil", True: "true", False: "false"}[value]
    if isinstance(value, Atom):
        return _inspect_atom(str(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _inspect_float(value)
    if isinstance(value, str):
        return _inspect_string(value)
    if isinstance(value, bytes | bytearray):
        try:
            text = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and text.isprintable():
            return _inspect_string(text)
        return "<<" + ", ".join(str(b) for b in value) + ">>"
    if isinstance(value, BitString):
        *whole, last = value.data or b"\x00"
        parts = [str(b) for b in whole]
        parts.append(f"{last >> (8 - value.bits)}::size({value.bits})")
        return "<<" + ", ".join(parts) + ">>"
    if isinstance(value, tuple):
        return "{" + ", ".join(inspect(v) for v in value) + "}"
    if isinstance(value, list):
        if _printable_charlist(value):
            return _inspect_string("".join(map(chr, value)), "'")
        return "[" + ", ".join(inspect(v) for v in value) + "]"
    if isinstance(value, ImproperList):
        return "[" + ", ".join(inspect(v) for v in value.items) + f" | {inspect(value.tail)}]"
    if isinstance(value, dict):
        return _inspect_map(value)
    return safe_repr(value)


def _inspect_map(value: dict[Any, Any]) -> str:
    if not value:
        return "%{}"
    # Erlang iterates maps of up to 32 keys in term order; larger ones in hash order, which a
    # map decoded from a term keeps.
    if len(value) <= 32:
        # Keys with no Erlang equivalent keep the dict's order.
        with contextlib.suppress(TermError, TypeError):
            value = {k: value[k] for k in sorted(value, key=order_key)}
    keyword = all(isinstance(k, Atom) for k in value)
    if keyword:
        pairs = []
        for key, item in value.items():
            name = _inspect_atom(str(key))
            label = name[1:] if name.startswith(":") else str(key)
            pairs.append(f"{label}: {inspect(item)}")
        return "%{" + ", ".join(pairs) + "}"
    return "%{" + ", ".join(f"{inspect(k)} => {inspect(v)}" for k, v in value.items()) + "}"
