"""The node's log events through Django's ``LOGGING``.

oban_py logs with structlog under stdlib logger names (``oban.job``, ``oban.node``,
``oban.plugin``, ``oban.cli``...). Unconfigured, structlog prints to stdout on its own, beside
Django's logging; ``route_structlog_to_logging`` hands each event to the stdlib logger of that
name instead, rendered as one line (tracebacks as plain text), so ``LOGGING["loggers"]["oban"]``
decides where it goes and at which level.
"""

from __future__ import annotations

import logging

import structlog

#: The stdlib logger every oban_py logger name is under.
ROOT_LOGGER = "oban"


def route_structlog_to_logging() -> bool:
    """Send structlog events to stdlib logging, unless the project configured structlog itself
    (then its setup is kept). True when this call configured it."""
    if structlog.is_configured():
        return False
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.LogfmtRenderer(key_order=["event"], drop_missing=True),
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return True


def ensure_visible(level: str) -> None:
    """Give the ``oban`` logger a console handler when ``LOGGING`` configured none for it (nor
    for the root): Django's default configuration would drop every event below WARNING."""
    logger = logging.getLogger(ROOT_LOGGER)
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
