"""Queue signals: pause, resume, scale, start and stop queues on every node, Elixir's included.

Each function builds the payload Elixir sends for one action, byte for byte once encoded (keys
sorted, ``ident`` naming the nodes that obey); ``sending`` is the work of publishing it on the
``signal`` channel, run by the same async and sync drivers as inserts, so
``Client.pause_queue`` and ``Client.pause_queue_sync`` cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from oban_py.config import Config
from oban_py.insert.statements import Statement, Work, one_statement
from oban_py.notifier import channel, encode_batch
from oban_py.sql import Queries

Payload = dict[str, Any]


def ident(config: Config, node: str | None, local_only: bool) -> str:
    """Who obeys: this instance's own node (``local_only``), one node by name, or every one."""
    if local_only:
        return config.ident
    if node is not None:
        return f"{config.name}.{node}"
    return "any"


def _limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    return limit


def pause(config: Config, queue: str, node: str | None, local_only: bool) -> Payload:
    return {"action": "pause", "queue": queue, "ident": ident(config, node, local_only)}


def resume(config: Config, queue: str, node: str | None, local_only: bool) -> Payload:
    return {"action": "resume", "queue": queue, "ident": ident(config, node, local_only)}


def scale(config: Config, queue: str, limit: int, node: str | None, local_only: bool) -> Payload:
    """Elixir's scale payload: its options (``node`` and ``local_only`` too), action, ident."""
    payload: Payload = {"action": "scale", "queue": queue, "limit": _limit(limit)}
    if node is not None:
        payload["node"] = node
    if local_only:
        payload["local_only"] = True
    payload["ident"] = ident(config, node, local_only)
    return payload


def start(
    config: Config,
    queue: str,
    limit: int,
    paused: bool | None,
    node: str | None,
    local_only: bool,
) -> Payload:
    """Elixir's start payload (``node`` addresses it but is not sent, as Elixir)."""
    payload: Payload = {"action": "start", "queue": queue, "limit": _limit(limit)}
    if paused is not None:
        payload["paused"] = paused
    if local_only:
        payload["local_only"] = True
    payload["ident"] = ident(config, node, local_only)
    return payload


def stop(config: Config, queue: str, node: str | None, local_only: bool) -> Payload:
    return {"action": "stop", "queue": queue, "ident": ident(config, node, local_only)}


def sending(queries: Queries, payload: Payload) -> Work[None]:
    """The work of publishing ``payload`` on the ``signal`` channel of ``queries``' prefix."""
    params = {
        "channel": channel(queries.prefix, "signal"),
        "payloads": encode_batch("signal", [payload]),
    }
    return one_statement(Statement(queries["notify"], params), lambda rows: None)
