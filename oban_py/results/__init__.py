"""Results and progress of jobs: wait for a job's recorded value, watch its progress.

``Oban.wait_for(job)`` / ``Oban.watch(job)`` / ``Oban.wait_for_sync(job)`` on a node, or
``Results(client)`` and ``wait_for_sync(client, job)`` with a plain ``Client``. Completion is
announced on a channel of our own (``<prefix>.oban_py_results``, see ``channel``); progress is
written by the node's ``ProgressWriter``. See docs/results.md and docs/progress.md.
"""

from oban_py.job.progress import Progress, StopReason
from oban_py.results.errors import (
    JobCancelled,
    JobDiscarded,
    JobFailed,
    JobNotFound,
    WaitStopped,
    WaitTimeout,
)
from oban_py.results.sync import wait_for_sync
from oban_py.results.waiter import RECHECK, Results

__all__ = [
    "RECHECK",
    "JobCancelled",
    "JobDiscarded",
    "JobFailed",
    "JobNotFound",
    "Progress",
    "Results",
    "StopReason",
    "WaitStopped",
    "WaitTimeout",
    "wait_for_sync",
]
