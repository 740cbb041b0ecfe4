"""Flow control across the cluster: a queue's global concurrency and rate limits, with
partitions, enforced in PostgreSQL.

A queue with neither limit fetches as before (``sql/fetch_jobs.sql``), paying nothing. A queue
with one claims through ``sql/flow_claim.sql`` (``sql/flow_claim_whole.sql`` when no limit has
partitions) inside a transaction that first takes the queue's advisory lock
(``sql/flow_lock.sql``), so for every Python node counting what the queue uses and claiming
what is left are one step:

- ``global_limit``: jobs of the queue (or of each partition) executing under Python producers
  whose heartbeat is fresh. A dead node's jobs stop counting once its beat is older than the
  ttl, whether or not they were rescued yet.
- ``rate_limit``: jobs started in the last ``period`` seconds, from a sliding log of starts in
  ``oban_py_flow_starts`` (one row per start, pruned as it ages out). A sliding log, not a fixed
  window: a fixed window lets twice the rate through across a boundary, and the acceptance
  of a rate limit is that no window of ``period`` seconds ever holds more than ``allowed``.
- partitions: by worker and/or the values of given args keys, found among the next ``scan``
  available jobs in the queue's order, so one heavy tenant cannot take the others' turn.

The node's own ``limit`` still bounds what each node runs. Elixir nodes on the same queue know
nothing of this: their jobs are neither counted nor blocked (docs/flow-control.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from oban_py.config import GlobalLimit, Partition, QueueConfig, RateLimit

#: Available jobs looked at per claim, at least, when partitions must be found among them.
MIN_SCAN = 1_000
#: ... and at most: a claim's cost stays bounded however long the queue.
MAX_SCAN = 10_000
#: The key of a limited queue's check-in (gossip) that tells its limits, so ``oban-py queues``
#: reads its usage as its nodes count it. A key of ours: Oban Web reads Oban Pro's
#: ``global_limit``/``rate_limit`` meta in a shape of Pro's own, and ignores keys it does not know.
CHECK_KEY = "oban_py_flow"
#: The options naming a queue's cluster-wide limits (Oban Pro's).
LIMITS = ("global_limit", "rate_limit")


@dataclass(frozen=True, slots=True)
class Flow:
    """The cluster-wide limits of one queue, as the claim statement's parameters."""

    global_limit: GlobalLimit | None
    rate_limit: RateLimit | None

    @classmethod
    def of(cls, spec: QueueConfig | None) -> Flow | None:
        """The queue's flow, or None when it has no cluster-wide limit (the plain fetch)."""
        if spec is None or (spec.global_limit is None and spec.rate_limit is None):
            return None
        return cls(spec.global_limit, spec.rate_limit)

    def check(self, ttl: float) -> dict[str, Any]:
        """What a check-in tells of these limits (under ``CHECK_KEY``), with the node's
        heartbeat ttl, which decides whose jobs count."""
        glob, rate = self.global_limit, self.rate_limit
        return {
            "global_limit": None if glob is None else glob.model_dump(),
            "rate_limit": None if rate is None else rate.model_dump(),
            "ttl": ttl,
        }

    @classmethod
    def from_check(cls, check: Mapping[str, Any]) -> tuple[Flow, float] | None:
        """The limits and ttl a check-in tells (``check``), or None when it tells none or
        tells them in a shape this version cannot read."""
        told = check.get(CHECK_KEY)
        if not isinstance(told, Mapping):
            return None
        try:
            spec = QueueConfig.model_validate(
                {"global_limit": told.get("global_limit"), "rate_limit": told.get("rate_limit")}
            )
            ttl = float(told["ttl"])
        except (ValidationError, KeyError, TypeError, ValueError):
            return None
        flow = cls.of(spec)
        return None if flow is None or not ttl > 0 else (flow, ttl)

    @classmethod
    def scaled(cls, flow: Flow | None, change: FlowChange) -> Flow | None:
        """``flow`` with ``change`` laid over it; None when no limit is left."""
        glob = None if flow is None else flow.global_limit
        rate = None if flow is None else flow.rate_limit
        if "global_limit" in change.named:
            glob = change.global_limit
        if "rate_limit" in change.named:
            rate = change.rate_limit
        return None if glob is None and rate is None else cls(glob, rate)

    def lock_key(self, prefix: str, queue: str) -> str:
        return f"oban_py.flow:{prefix}:{queue}"

    @property
    def partitioned(self) -> bool:
        return any(
            limit is not None and limit.partition is not None
            for limit in (self.global_limit, self.rate_limit)
        )

    @property
    def claim(self) -> str:
        """The claim statement: ranking jobs by partition takes more planning and work (a
        quarter more server time per claim), so a queue whose limits have no partitions counts
        one number (``flow_claim_whole.sql``)."""
        return "flow_claim" if self.partitioned else "flow_claim_whole"

    def params(self, demand: int, ttl: float) -> dict[str, Any]:
        """The parameters of the claim besides queue, node, uuid and finished."""
        glob, rate = self.global_limit, self.rate_limit
        scan = max(MIN_SCAN, 50 * demand) if self.partitioned else demand
        return {
            "demand": demand,
            "scan": min(MAX_SCAN, scan),
            "ttl": ttl,
            "global": None if glob is None else glob.allowed,
            "rate": None if rate is None else rate.allowed,
            "period": 0.0 if rate is None else rate.period,
            **_partition("g", None if glob is None else glob.partition),
            **_partition("r", None if rate is None else rate.partition),
        }


@dataclass(frozen=True, slots=True)
class FlowChange:
    """The cluster-wide limits a ``scale`` signal changes. Oban Web sends one limit per scale
    (``{"rate_limit": {...}}`` alone) and ``null`` to lift one, as Oban Pro's producer merges a
    scale into its meta: a limit the signal carries replaces the queue's, ``None`` removes it,
    and one it does not carry is kept."""

    named: frozenset[str]
    global_limit: GlobalLimit | None
    rate_limit: RateLimit | None

    @classmethod
    def of(cls, payload: Mapping[str, Any]) -> FlowChange | None:
        """The change ``payload`` asks for, validated as config is; None when it names no
        limit. Raises ``ValidationError`` for a bad limit, before anything changed."""
        given = {key: payload[key] for key in LIMITS if key in payload}
        if not given:
            return None
        spec = QueueConfig(**{key: value for key, value in given.items() if value is not None})
        return cls(frozenset(given), spec.global_limit, spec.rate_limit)


def _partition(side: str, partition: Partition | None) -> dict[str, Any]:
    return {
        f"{side}_part": partition is not None,
        f"{side}_worker": partition is not None and "worker" in partition.fields,
        f"{side}_args": partition is not None and "args" in partition.fields,
        f"{side}_keys": [] if partition is None else list(partition.keys),
    }
