"""What the dashboard's buttons do, through the library's own API and nothing else.

Job actions call the ``Client`` management methods (``retry_jobs``, ``cancel_jobs``,
``delete_jobs``), so they keep Elixir's semantics (cancel kills executing jobs with ``pkill``,
delete skips executing ones). Queue actions are ``Oban`` signals (``pause_queue``,
``resume_queue``, ``scale_queue``): every node listening, Elixir or Python, obeys them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from oban_py import Client, Oban
from oban_py.client.registry import unregistered
from oban_py_ext.web.filters import JobFilter
from oban_py_ext.web.reads import Reads

JOB_ACTIONS = ("retry", "cancel", "delete")
QUEUE_ACTIONS = ("pause", "resume", "scale")
#: Ids per management call of a bulk action.
BATCH = 1_000


@dataclass
class Outcome:
    message: str
    ok: bool = True


class Actions:
    def __init__(self, client: Client, reads: Reads, bulk_limit: int) -> None:
        self.client = client
        self.reads = reads
        self.bulk_limit = bulk_limit
        self._node: Oban | None = client if isinstance(client, Oban) else None

    def _by_name(self, action: str) -> Callable[[Sequence[int]], Awaitable[int]]:
        return {
            "retry": self.client.retry_jobs,
            "cancel": self.client.cancel_jobs,
            "delete": self.client.delete_jobs,
        }[action]

    async def on_job(self, action: str, job_id: int) -> Outcome:
        done = await self._by_name(action)([job_id])
        if done:
            return Outcome(f"Job {job_id}: {_past(action)}.")
        why = {
            "retry": "it is available or executing already",
            "cancel": "it is completed, discarded or cancelled already",
            "delete": "it is executing (cancel it first) or gone",
        }[action]
        return Outcome(f"Job {job_id} was not {_past(action)}: {why}.", ok=False)

    async def on_filter(self, action: str, job_filter: JobFilter) -> Outcome:
        """Apply ``action`` to every job matching the filter, in batches, up to the limit."""
        run = self._by_name(action)
        seen = changed = 0
        cursor = 0
        while seen < self.bulk_limit:
            limit = min(BATCH, self.bulk_limit - seen)
            ids = await self.reads.matching_ids(job_filter, after=cursor, limit=limit)
            if not ids:
                break
            seen += len(ids)
            changed += await run(ids)
            cursor = ids[-1]
        capped = " (the bulk limit; run it again for more)" if seen >= self.bulk_limit else ""
        return Outcome(f"{_past(action).capitalize()} {changed} of {seen} matching jobs{capped}.")

    def _signaller(self) -> Oban:
        if self._node is None:
            config = self.client.config
            pool = self.client.pool
            made = unregistered(lambda: Oban(config=config, pool=pool))
            assert isinstance(made, Oban)
            self._node = made
        return self._node

    async def on_queue(
        self, action: str, queue: str, *, node: str | None, limit: int | None
    ) -> Outcome:
        signaller = self._signaller()
        where = f"node {node}" if node else "every node"
        if action == "pause":
            await signaller.pause_queue(queue, node=node)
            return Outcome(f"Sent pause for queue {queue} to {where}.")
        if action == "resume":
            await signaller.resume_queue(queue, node=node)
            return Outcome(f"Sent resume for queue {queue} to {where}.")
        if limit is None or limit < 1:
            return Outcome("Scaling needs a limit of at least 1.", ok=False)
        await signaller.scale_queue(queue, limit=limit, node=node)
        return Outcome(f"Sent scale to {limit} for queue {queue} to {where}.")

    async def close(self) -> None:
        if self._node is not None and self._node is not self.client:
            self._node.threads.shutdown(wait=False)


def _past(action: str) -> str:
    return {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}[action]
