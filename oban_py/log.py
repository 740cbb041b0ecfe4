"""Logging: structlog on top of the standard library's logging.

``configure`` sets up one pipeline for both structlog loggers and plain ``logging`` records
(those of psycopg, of the application), rendered as JSON lines or for a console. The library
never configures logging by itself; the CLI does, and an application may call ``configure`` or
keep its own setup (structlog then follows whatever it configured).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO

import structlog

from oban_py import dberrors, telemetry

Format = Literal["json", "console"]


def configure(level: str = "info", fmt: Format = "console", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to ``stream`` (stderr) at ``level``."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# -- telemetry → structured log events ----------------------------------------------------------

#: The handler id ``attach_default_logger`` registers under (re-attaching replaces it).
HANDLER_ID = "oban_py.default_logger"
#: Events logged by the default logger: jobs, every periodic duty's span, and node/notifier news.
DEFAULT_EVENTS = (
    "oban.job.*",
    "oban.node.*",
    "oban.notifier.*",
    "oban.stager.*",
    "oban.pruner.*",
    "oban.lifeline.*",
    "oban.cron.*",
    "oban.peer.*",
    "oban.sonar.*",
    "oban.gossip.*",
    "oban.ack.*",
)
#: Job states that mean the attempt failed: logged at warning level.
FAILED_STATES = frozenset({"retryable", "discarded"})
#: Periodic duties that tick every second or so: their routine passes are logged at debug level.
CHATTY = frozenset({"oban.stager", "oban.gossip", "oban.peer", "oban.sonar"})

_job_log = structlog.get_logger("oban.job")
_plugin_log = structlog.get_logger("oban.plugin")
_node_log = structlog.get_logger("oban.node")


def _ms(nanoseconds: Any) -> float | None:
    return round(nanoseconds / 1e6, 3) if isinstance(nanoseconds, int | float) else None


def _job_fields(metadata: Mapping[str, Any]) -> dict[str, Any]:
    job = metadata.get("job")
    fields: dict[str, Any] = {
        "worker": metadata.get("worker", getattr(job, "worker", None)),
        "queue": metadata.get("queue", getattr(job, "queue", None)),
    }
    if job is not None:
        fields["id"] = job.id
        fields["attempt"] = job.attempt
        fields["max_attempts"] = job.max_attempts
        attempted, scheduled = job.attempted_at, job.scheduled_at
        if attempted is not None and scheduled is not None:
            # How long the job waited to run once it was due (Elixir's queue_time).
            fields["queue_time_ms"] = round((attempted - scheduled).total_seconds() * 1000, 3)
    return fields


def _log_job(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    fields = _job_fields(metadata)
    kind = event.rsplit(".", 1)[-1]
    if kind == "start":
        _job_log.info("job started", event_name=event, **fields)
        return
    fields["duration_ms"] = _ms(measurements.get("duration"))
    result = metadata.get("result", metadata.get("error"))
    state = metadata.get("state")
    if kind == "exception" or isinstance(result, BaseException):
        fields["state"] = state or "failure"
        fields["error"] = repr(result)
        level = "warning" if state in FAILED_STATES or kind == "exception" else "info"
        # A shutdown interrupts a job without failing it: it is released to run again.
        message = "job interrupted" if metadata.get("kind") == "exit" else "job failed"
        getattr(_job_log, level)(message, event_name=event, **fields)
        return
    fields["state"] = state
    _job_log.info("job stopped", event_name=event, **fields)


def _plain(value: Any) -> Any:
    # Metadata may hold live objects (the node, a connection): log only what renders as data.
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value] if len(value) <= 20 else f"<{len(value)} items>"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, BaseException):
        return repr(value)
    return None


def _did_something(result: Any) -> bool:
    # A pass reporting counts did nothing when every count is zero.
    if isinstance(result, dict):
        return any(result.values())
    return bool(result)


def _log_other(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    prefix, _, kind = event.rpartition(".")
    fields = {k: p for k, v in metadata.items() if (p := _plain(v)) is not None}
    fields.update({k: p for k, v in measurements.items() if (p := _plain(v)) is not None})
    if "duration" in measurements:
        fields.pop("duration", None)
        fields["duration_ms"] = _ms(measurements["duration"])
    fields.pop("system_time", None)
    if prefix in ("oban.node", "oban.notifier") or event == "oban.stager.switch":
        _node_log.info(event, event_name=event, **fields)
        return
    if kind == "start":
        return
    if kind == "exception":
        # A transient error (the database away, read-only, cancelling) is a warning from the
        # duty itself once per outage; a line per failed pass here would be the stream again.
        error = metadata.get("error")
        transient = isinstance(error, BaseException) and dberrors.classify(error).retry
        # A pass cut short by the node's stop did not fail: its cancellation is the stop.
        stopped = isinstance(error, asyncio.CancelledError)
        level = "debug" if transient or stopped else "warning"
        getattr(_plugin_log, level)("plugin failed", event_name=event, plugin=prefix, **fields)
        return
    # Passes that did nothing, and duties that tick every second, would drown the job events.
    quiet = prefix in CHATTY or not _did_something(fields.get("result"))
    level = "debug" if quiet else "info"
    getattr(_plugin_log, level)("plugin ran", event_name=event, plugin=prefix, **fields)


def default_handler(
    event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]
) -> None:
    """Log one telemetry event as one structured log event (the default logger's handler)."""
    if event.startswith("oban.job."):
        _log_job(event, measurements, metadata)
    else:
        _log_other(event, measurements, metadata)


def attach_default_logger(events: Iterable[str] = DEFAULT_EVENTS) -> None:
    """Log jobs (start, stop, failure with worker, queue, id, attempt, duration, queue time,
    state) and plugin passes through structlog, by attaching a telemetry handler.

    Logging goes wherever structlog is configured: call :func:`configure` first for JSON lines
    or console output, or keep an application's own setup.
    """
    telemetry.attach(HANDLER_ID, list(events), default_handler)


#: What a node logs when the application chose nothing (``Config.default_logger="failures"``):
#: failed attempts, jobs cut off by a shutdown, and failed plugin passes, all at warning level.
FAILURE_EVENTS = (
    "oban.job.exception",
    *(f"{family[:-2]}.exception" for family in DEFAULT_EVENTS if family != "oban.job.*"),
)
#: The choices of ``Config.default_logger``.
NODE_LOGGERS = ("failures", "all", "off")


def attach_node_logger(choice: str = "failures") -> None:
    """What ``Oban.start`` does with ``Config.default_logger``.

    ``"failures"`` logs :data:`FAILURE_EVENTS` unless :func:`attach_default_logger` was called
    already (it logs them too, with everything else); ``"all"`` is
    :func:`attach_default_logger`; ``"off"`` attaches nothing, for an application that logs
    telemetry events its own way. Either logger stays attached for the process, once, whatever
    the number of nodes; :func:`detach_default_logger` removes it.
    """
    if choice == "all":
        attach_default_logger()
    elif choice == "failures" and not telemetry.attached(HANDLER_ID):
        telemetry.attach(HANDLER_ID, list(FAILURE_EVENTS), default_handler)


def detach_default_logger() -> bool:
    """Stop logging telemetry events; True when the default logger was attached."""
    return telemetry.detach(HANDLER_ID)
