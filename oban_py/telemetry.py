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
_handlers: dict[str, tuple[frozenset[str], Handler]] = {}
# Event name -> the handlers it reaches, so a job's events skip matching every pattern of every
# handler. attach/detach replace the whole dict: a route computed from the old handlers can
# only land in the discarded dict, even when another thread attaches meanwhile.
_routes: dict[str, tuple[tuple[str, Handler], ...]] = {}
_MAX_ROUTES = 1024


def attach(handler_id: str, events: str | Iterable[str], handler: Handler) -> None:
    """Call ``handler(event, measurements, metadata)`` for each of ``events``.

    ``events`` may end in ``*`` to match a whole family (``"oban.job.*"``). Re-attaching an id
    replaces the previous handler.
    """
    global _routes
    names = frozenset([events] if isinstance(events, str) else events)
    _handlers[handler_id] = (names, handler)
    _routes = {}


def detach(handler_id: str) -> bool:
    global _routes
    found = _handlers.pop(handler_id, None) is not None
    _routes = {}
    return found


def attached(handler_id: str) -> bool:
    """True when a handler is attached under ``handler_id``."""
    return handler_id in _handlers


def _matches(patterns: frozenset[str], event: str) -> bool:
    if event in patterns:
        return True
    return any(p.endswith("*") and event.startswith(p[:-1]) for p in patterns)


def listening(event: str) -> bool:
    """True when some handler would receive ``event``: emitters skip building metadata
    nobody reads (a node logging only failures builds none for the jobs that succeed)."""
    return bool(_handlers) and bool(_route(event))


def execute(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    if not _handlers:
        return
    for handler_id, handler in _route(event):
        try:
            handler(event, measurements, metadata)
        except BaseException:  # even SystemExit: a handler must never end a job or a node
            _log.exception("telemetry handler failed", handler_id=handler_id, event_name=event)


def _route(event: str) -> tuple[tuple[str, Handler], ...]:
    routes = _routes
    route = routes.get(event)
    if route is None:
        items = list(_handlers.items())
        route = tuple((hid, handler) for hid, (names, handler) in items if _matches(names, event))
        # Event names are a small fixed set in practice; a caller inventing names per call
        # must not grow the cache without bound.
        if len(routes) < _MAX_ROUTES:
            routes[event] = route
    return route


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
