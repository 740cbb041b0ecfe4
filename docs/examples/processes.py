"""CPU-bound jobs in worker processes: run with DATABASE_URL set, ``python processes.py``.

The worker is defined in this script: the worker process imports the script as
``__mp_main__`` (so the ``if __name__ == "__main__"`` guard keeps the node from starting
there) and finds ``Primes`` in it by name.
"""

from __future__ import annotations

import asyncio
import os

from oban_py import Job, Oban, worker


@worker(queue="cpu", executor="process")
class Primes:
    def timeout(self, job: Job) -> float:
        return 30.0  # past it, the process is killed and the attempt fails

    def process(self, job: Job) -> None:
        below = job.args["below"]
        count = sum(1 for n in range(2, below) if all(n % d for d in range(2, int(n**0.5) + 1)))
        print(f"{count} primes below {below}, in process {os.getpid()}")


async def completed(oban: Oban, job: Job) -> None:
    while True:
        found = await oban.get_job(job.id)  # type: ignore[arg-type]
        if found is not None and found.state == "completed":
            return
        await asyncio.sleep(0.1)


async def main() -> None:
    dsn = os.environ["DATABASE_URL"]
    async with Oban(dsn=dsn, queues={"cpu": 2}, peer=False) as oban:
        jobs = [await Primes.enqueue({"below": 50_000}) for _ in range(4)]
        for job in jobs:
            await completed(oban, job)
        print("completed", len(jobs), "jobs; node process", os.getpid())


if __name__ == "__main__":
    asyncio.run(main())
