"""What a running job reports about itself: its progress, and why it is being stopped.

``Progress`` is what ``job.progress(value, note=...)`` stores in ``meta.progress`` (a key
Elixir Oban ignores; the dashboard shows it). ``ProgressSink`` is the contract a node fills in
to write it (``oban_py.results.progress``); with none (a job run by ``perform_job`` or outside a
node) the value is kept on the job only. ``StopReason`` names why a node raised
``job.cancelled()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from oban_py.job.errors import storable

#: Why a running job is asked to stop (``job.stop_reason``):
#:
#: - ``"cancel"``: an operator cancelled it (``cancel_job``, Oban Web, an Elixir node's pkill);
#:   the row is cancelled already, whatever the worker returns;
#: - ``"shutdown"``: this node is stopping and the shutdown grace ran out;
#: - ``"fenced"``: this node could not write its heartbeat, so another may soon rescue the job;
#: - ``"timeout"``: the worker's ``timeout(job)`` elapsed; the attempt fails with Elixir's
#:   timeout error and is retried.
StopReason = Literal["cancel", "shutdown", "fenced", "timeout"]

#: A note longer than this is cut: it travels in a NOTIFY, which Postgres caps at 8000 bytes.
MAX_NOTE = 1_000


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report: ``value`` in 0..1, an optional ``note``, when and in which attempt.

    ``seq`` counts the reports of one attempt that were written, so ``(attempt, seq)`` orders
    them.
    """

    value: float
    note: str | None
    at: datetime
    attempt: int
    seq: int

    def to_meta(self) -> dict[str, Any]:
        at = self.at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
        return {
            "value": self.value,
            "note": self.note,
            "at": at + "Z",
            "attempt": self.attempt,
            "seq": self.seq,
        }

    @classmethod
    def from_meta(cls, raw: Any) -> Progress | None:
        """The progress stored in ``meta.progress``, or None when absent or not one of ours."""
        if not isinstance(raw, dict):
            return None
        try:
            value = float(raw["value"])
            note = raw.get("note")
            at = datetime.fromisoformat(str(raw["at"]).removesuffix("Z")).replace(tzinfo=UTC)
            return cls(
                value,
                note if isinstance(note, str) else None,
                at,
                int(raw["attempt"]),
                int(raw["seq"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def key(self) -> tuple[int, int]:
        return (self.attempt, self.seq)


def check(value: float, note: str | None) -> tuple[float, str | None]:
    """The value and note a report stores: value a finite number in 0..1, note cut to size and
    made storable (NUL and lone surrogates escaped, as in ``errors`` entries: a note is often a
    file name or a row's text, and must not cost the report)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"progress must be a number between 0 and 1, got {value!r}")
    if not 0 <= value <= 1:
        raise ValueError(f"progress must be between 0 and 1, got {value!r}")
    if note is not None:
        if not isinstance(note, str):
            raise TypeError(f"a progress note must be a string, got {type(note).__name__}")
        note = storable(note[:MAX_NOTE])[:MAX_NOTE]
    return float(value), note


class ProgressSink(Protocol):
    """Where a running job's progress goes: written (throttled) and announced by the node."""

    # ``job`` is the running ``Job`` (typed Any: the model imports this module).
    def report(self, job: Any, progress: Progress) -> None:
        """Take a report from the event loop's thread; never blocks, never raises."""

    def report_threadsafe(self, job: Any, progress: Progress) -> None:
        """Take a report from any thread (a sync worker's); never blocks, never raises."""

    async def settle(self, job: Any) -> None:
        """The attempt ended: write the report still held, before its outcome; never raises."""
