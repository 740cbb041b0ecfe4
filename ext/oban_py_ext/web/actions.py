"""What the dashboard's buttons do, through the library's own API and nothing else.

Job actions (one job, the rows selected on a page, and the batches of a bulk run, see
``bulk``) call the ``Client`` management methods (``retry_jobs``, ``cancel_jobs``,
``delete_jobs``), so they keep Elixir's semantics (cancel kills executing jobs with ``pkill``,
delete skips executing ones). Queue actions are ``Oban`` signals (``pause_queue``,
``resume_queue``, ``scale_queue``): every node listening, Elixir or Python, obeys them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from oban_py import Client, Oban
from oban_py.client.registry import unregistered

JOB_ACTIONS = ("retry", "cancel", "delete")
QUEUE_ACTIONS = ("pause", "resume", "scale")


@dataclass
class Outcome:
    message: str
    ok: bool = True


class Actions:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._node: Oban | None = client if isinstance(client, Oban) else None

    def perform(self, action: str) -> Callable[[Sequence[int]], Awaitable[int]]:
        return {
            "retry": self.client.retry_jobs,
            "cancel": self.client.cancel_jobs,
            "delete": self.client.delete_jobs,
        }[action]

    async def on_job(self, action: str, job_id: int) -> Outcome:
        done = await self.perform(action)([job_id])
        if done:
            return Outcome(f"Job {job_id}: {_past(action)}.")
        why = {
            "retry": "it is available or executing already",
            "cancel": "it is completed, discarded or cancelled already",
            "delete": "it is executing (cancel it first) or gone",
        }[action]
        return Outcome(f"Job {job_id} was not {_past(action)}: {why}.", ok=False)

    async def on_selection(self, action: str, job_ids: Sequence[int]) -> Outcome:
        """The rows ticked on a page: at most a page of ids, in one statement."""
        done = await self.perform(action)(job_ids)
        return Outcome(f"{_past(action).capitalize()} {done:,} of {len(job_ids):,} selected jobs.")

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
