"""What a flow-limited queue uses now of its cluster-wide limits: the one reader of
``sql/flow_usage.sql``, for ``oban-py queues``, ``oban-py flow`` and the node's
``oban.flow.usage`` telemetry event (``cluster/flowmeter.py``).

A reading counts what the claim counts (``sql/flow_claim.sql``), by the same partition keys
(``sql/flow_key.sql``): under a global limit, the queue's jobs executing under Python producers
whose beat is fresher than the ttl; under a rate limit, its starts within the period. It takes
no lock, so it is a moment's picture, never a bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from oban_py.config import GlobalLimit, RateLimit
from oban_py.flow import Flow
from oban_py.job import jsonb

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from oban_py.sql import Queries

#: Partitions listed at most per limit, the busiest first: a limit by an args key may have a
#: value per tenant, and a reading is for people and dashboards, not an inventory.
MOST_PARTITIONS = 100


@dataclass(frozen=True, slots=True)
class Usage:
    """What a queue uses now of one of its limits (``limit`` is ``global`` or ``rate``)."""

    limit: Literal["global", "rate"]
    #: the limit's ``allowed`` (of each partition when partitioned); None when not known
    allowed: int | None
    #: jobs executing (global) or started within ``period`` seconds (rate), the whole queue
    used: int
    #: the rate limit's window in seconds; None for a global limit
    period: float | None = None
    #: partition (see ``label``) -> its count, the busiest ``MOST_PARTITIONS`` of a partitioned
    #: limit; ``{"": used}`` for a limit without partitions
    partitions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def read(
    conn: AsyncConnection[Any],
    queries: Queries,
    queue: str,
    flow: Flow | None,
    *,
    ttl: float,
    period: float = 60.0,
) -> list[Usage]:
    """The usage of each limit of ``flow`` (global first); with ``flow`` None (the limits are
    not known to the caller) both counts of the whole queue, the rate one over ``period``."""
    limits = _limits(flow, period)
    params = {**limits.params(0, ttl), "queue": queue, "most": MOST_PARTITIONS}
    cur = await conn.execute(queries["flow_usage"], params)
    rows = await cur.fetchall()
    sides: list[tuple[Literal["global", "rate"], GlobalLimit | RateLimit | None]] = [
        ("global", limits.global_limit),
        ("rate", limits.rate_limit),
    ]
    found: list[Usage] = []
    for side, limit in sides:
        if limit is None:
            continue
        whole = next(int(used) for name, key, used in rows if name == side and key is None)
        keyed = {label(key): int(used) for name, key, used in rows if name == side and key}
        found.append(
            Usage(
                side,
                None if flow is None else limit.allowed,
                whole,
                period=limit.period if isinstance(limit, RateLimit) else None,
                partitions=keyed if limit.partition is not None else {"": whole},
            )
        )
    return found


def _limits(flow: Flow | None, period: float) -> Flow:
    if flow is not None:
        return flow
    # Limits not known: count as a global and a rate limit of the whole queue would (their
    # ``allowed`` is not reported).
    return Flow(GlobalLimit(allowed=1), RateLimit(allowed=1, period=period))


def label(key: str) -> str:
    """A partition key as people read it: ``worker=Mailer``, ``account_id=7``,
    ``worker=Export,account_id="acme"`` (args values in JSON); ``""`` for the whole queue."""
    if not key:
        return ""
    # jsonb: an account id wider than 64 bits reads as it is, not as a rounded float.
    worker, args = jsonb.loads(key)
    parts = [] if worker is None else [f"worker={worker}"]
    if isinstance(args, dict):
        parts += [f"{k}={jsonb.dumps_str(v)}" for k, v in args.items()]
    return ",".join(parts)
