"""Queue settings that live in the database (``--persist``): limit, paused state and the
cluster-wide limits of a queue, stored in ``oban_py_queues`` so a restarted node, or one started
later, runs the queue as the cluster was last told to.

Storing is opt-in per change (``Client.persist_queue``, ``oban-py pause/resume/scale
--persist``); the signal that applies a change to the running nodes is sent as before, so Elixir
nodes keep obeying it. A node reads the stored settings of the queues it runs when it starts,
and they take precedence over its configuration for those keys.
"""

from __future__ import annotations

from typing import Any

from oban_py.config import QueueConfig
from oban_py.insert.statements import Statement, Work, one_statement
from oban_py.job import jsonb
from oban_py.sql import Queries

#: The settings a queue may persist (a QueueConfig's fields).
KEYS = ("limit", "paused", "global_limit", "rate_limit")


def storing(queries: Queries, queue: str, **opts: Any) -> Work[None]:
    """The work of merging ``opts`` into ``queue``'s stored settings (validated first)."""
    unknown = set(opts) - set(KEYS)
    if unknown:
        raise ValueError(f"cannot persist {sorted(unknown)}; a queue persists {list(KEYS)}")
    given = {k: v for k, v in opts.items() if v is not None}
    QueueConfig(**given)  # refuse a bad value before storing it for every node
    params = {"queue": queue, "opts": jsonb.dumps_str(given)}
    return one_statement(Statement(queries["queue_settings_upsert"], params), lambda rows: None)


def stored(queries: Queries, queues: list[str]) -> Work[dict[str, dict[str, Any]]]:
    """The work of reading the stored settings of ``queues``: name → settings."""
    params = {"queues": queues}
    return one_statement(
        Statement(queries["queue_settings_get"], params),
        lambda rows: {name: dict(opts) for name, opts in rows if isinstance(opts, dict)},
    )


def apply(spec: QueueConfig, opts: dict[str, Any]) -> QueueConfig:
    """``spec`` with the stored settings laid over it."""
    known = {k: v for k, v in opts.items() if k in KEYS}
    return QueueConfig(**{**spec.model_dump(exclude_none=True), **known})
