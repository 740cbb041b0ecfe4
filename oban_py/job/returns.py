"""What a worker's ``process`` may return besides a plain value.

Returning ``None`` (or any other value) completes the job; raising fails it. These three ask for
something else, with the meaning Elixir Oban gives the matching perform results:

- ``Snooze(seconds)`` is ``{:snooze, seconds}``: run again later; as in Elixir 2.23 the attempt
  still counts (``job.attempt`` goes 1, 2, 3) and ``max_attempts`` grows by one, so snoozing
  never uses up the retries a failure would get;
- ``Cancel(reason)`` is ``{:cancel, reason}``: stop for good, recording the reason;
- ``Record(value)`` completes the job and stores ``value`` in ``meta`` (Oban Pro's recorded
  jobs: ``meta.recorded = true``, ``meta.return`` = Base64 of the Erlang term).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oban_py.job.terms import RECORD_LIMIT


@dataclass(frozen=True, slots=True)
class Snooze:
    """Run the job again ``seconds`` from now: the attempt counts, ``max_attempts`` grows by one
    (Elixir's rule, ``executor.snooze_ack``), so a snooze never costs a retry."""

    seconds: int

    def __post_init__(self) -> None:
        if not isinstance(self.seconds, int) or self.seconds < 0:
            raise ValueError(
                f"Snooze needs a non-negative integer of seconds, got {self.seconds!r}"
            )


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the job; ``reason`` is recorded in its errors like Elixir's ``{:cancel, reason}``."""

    reason: Any = None


@dataclass(frozen=True, slots=True)
class Record:
    """Complete the job and record ``value`` (Erlang-term encodable) in its meta."""

    value: Any
    limit: int = RECORD_LIMIT
