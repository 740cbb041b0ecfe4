"""Telemetry in the manner of Elixir's :telemetry: named events with measurements and metadata.

Event names are dotted strings mirroring Oban's (``oban.job.start``, ``oban.job.stop``,
``oban.job.exception``, ``oban.plugin.stop``, ``oban.notifier.switch`` ...). Handlers run inline in
the emitting task, so they must be quick; a handler that raises is logged and never breaks the job
or component that emitted the event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog

Handler = Callable[[str, Mapping[str, Any], Mapping[str, Any]], None]

_log = structlog.get_logger("oban_py.telemetry")
_handlers: dict[str, tuple[frozenset[str], tuple[str, ...], Handler]] = {}


def attach(handler_id: str, events: str | Iterable[str], handler: Handler) -> None:
    """Call ``handler(event, measurements, metadata)`` for each of ``events``.

    ``events`` may end in ``*`` to match a whole family (``"oban.job.*"``). Re-attaching an id
    replaces the previous handler.
    """
    names = frozenset([events] if isinstance(events, str) else events)
    # Families apart from exact names: matching runs for every job event, so it stays a set
    # lookup plus a startswith over the (few) families.
    families = tuple(n[:-1] for n in names if n.endswith("*"))
    _handlers[handler_id] = (names, families, handler)


def detach(handler_id: str) -> bool:
    return _handlers.pop(handler_id, None) is not None


def attached(handler_id: str) -> bool:
    """True when a handler is attached under ``handler_id``."""
    return handler_id in _handlers


def _matches(names: frozenset[str], families: tuple[str, ...], event: str) -> bool:
    return event in names or event.startswith(families)


def execute(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    if not _handlers:
        return
    for handler_id, (names, families, handler) in list(_handlers.items()):
        if _matches(names, families, event):
            try:
                handler(event, measurements, metadata)
            except Exception:
                _log.exception("telemetry handler failed", handler_id=handler_id, event_name=event)


@contextmanager
def span(prefix: str, metadata: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Emit ``<prefix>.start``, then ``.stop`` or ``.exception`` with a ``duration`` in ns.

    The yielded dict is the metadata: the body may add to it (a result, a count) before stop.
    """
    start = time.monotonic_ns()
    execute(f"{prefix}.start", {"system_time": time.time_ns()}, metadata)
    try:
        yield metadata
    except BaseException as error:
        duration = time.monotonic_ns() - start
        execute(f"{prefix}.exception", {"duration": duration}, {**metadata, "error": error})
        raise
    execute(f"{prefix}.stop", {"duration": time.monotonic_ns() - start}, metadata)
