"""Flow control across the cluster: a queue's global concurrency and rate limits, with
partitions, enforced in PostgreSQL.

A queue with neither limit fetches as before (``sql/fetch_jobs.sql``), paying nothing. A queue
with one claims through ``sql/flow_claim.sql`` inside a transaction that first takes the queue's
advisory lock (``sql/flow_lock.sql``), so for every Python node counting what the queue uses and
claiming what is left are one step:

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

from dataclasses import dataclass
from typing import Any

from oban_py.config import GlobalLimit, Partition, QueueConfig, RateLimit

#: Available jobs looked at per claim, at least, when partitions must be found among them.
MIN_SCAN = 1_000
#: ... and at most: a claim's cost stays bounded however long the queue.
MAX_SCAN = 10_000


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

    def lock_key(self, prefix: str, queue: str) -> str:
        return f"oban_py.flow:{prefix}:{queue}"

    def params(self, demand: int, ttl: float) -> dict[str, Any]:
        """The parameters of ``flow_claim.sql`` besides queue, node and uuid."""
        glob, rate = self.global_limit, self.rate_limit
        partitioned = any(
            limit is not None and limit.partition is not None for limit in (glob, rate)
        )
        scan = max(MIN_SCAN, 50 * demand) if partitioned else demand
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


def _partition(side: str, partition: Partition | None) -> dict[str, Any]:
    return {
        f"{side}_part": partition is not None,
        f"{side}_worker": partition is not None and "worker" in partition.fields,
        f"{side}_args": partition is not None and "args" in partition.fields,
        f"{side}_keys": [] if partition is None else list(partition.keys),
    }
