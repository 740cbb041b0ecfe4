"""Workers for the CLI tests: loaded by ``oban-py start --import tests.clisupport.workers``."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from oban_py.job.model import Job
from oban_py.worker import Worker


class Echo(Worker):
    name = "CliSupport.Echo"

    async def process(self, job: Job) -> None:
        return None


class EchoSync(Worker):
    """A plain def worker: after it ran, the node has an idle pool thread."""

    name = "CliSupport.EchoSync"

    def process(self, job: Job) -> None:
        return None


class Sleep(Worker):
    """Sleeps ``args["ms"]``: a job still running when the node is told to stop."""

    name = "CliSupport.Sleep"

    async def process(self, job: Job) -> None:
        await asyncio.sleep(job.args["ms"] / 1000)


class Fail(Worker):
    name = "CliSupport.Fail"

    async def process(self, job: Job) -> None:
        raise RuntimeError("boom")


class Signup(BaseModel):
    email: str
    plan: int


class Welcome(Worker):
    """Typed args and its own options: what ``oban-py enqueue`` must apply when it can import it."""

    name = "CliSupport.Welcome"
    queue = "mailers"
    max_attempts = 3
    priority = 2
    args_model = Signup

    async def process(self, job: Job) -> None:
        return None
