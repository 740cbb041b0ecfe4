"""Workers a type checker understands: checked by mypy --strict in ``python3 dev.py lint``.

What docs/workers.md's "Type checking" section shows: a ``Worker`` subclass and a ``@job``
function are typed classes, so ``new`` and ``enqueue`` are checked where they are called.
"""

from __future__ import annotations

from oban_py import Job, Worker, job


class Mailer(Worker):
    queue = "mailers"
    max_attempts = 5

    async def process(self, job: Job) -> None:
        print("sending to", job.args["to"])


@job(queue="reports")
async def build_report(account_id: int) -> None:
    print("report for", account_id)


async def enqueue_both() -> list[Job]:
    mail = await Mailer.enqueue({"to": "ada@example.com"}, priority=1)
    report = build_report.new({"account_id": 42}, schedule_in=60)
    # The function itself stays callable, as ``func``.
    await build_report.func(account_id=0)
    return [mail, report]
