"""The export worker of docs/workers.md: it stops the right way for each reason it is stopped.

Run by tests/test_results.py: a shutdown snoozes the export (it runs again later, here or on
another node), an operator's cancel leaves it cancelled, and a finished export records its
row count for whoever waits on it.
"""

from __future__ import annotations

import time

from oban_py import Job, Record, Snooze, Worker


def write_chunk(number: int) -> None:
    time.sleep(0.05)  # stands for real work: a query, a file write


class Export(Worker):
    name = "Docs.Export"
    queue = "exports"

    def process(self, job: Job) -> Record | Snooze | None:
        chunks = int(job.args.get("chunks", 10))
        for number in range(chunks):
            if job.cancelled():
                if job.stop_reason in ("shutdown", "fenced"):
                    # Not the export's fault: run it again later, here or on another node.
                    return Snooze(5)
                # "cancel": an operator cancelled it, the row is cancelled already.
                # "timeout": the attempt fails with Elixir's timeout error and is retried.
                return None
            write_chunk(number)
            job.progress_sync((number + 1) / chunks, note=f"chunk {number + 1} of {chunks}")
        return Record({"chunks": chunks})
