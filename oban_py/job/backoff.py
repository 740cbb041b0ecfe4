"""Elixir Oban's default retry backoff (``Oban.Worker.backoff/1``), with its jitter.

``15 + 2 ** attempt`` seconds, the attempt first scaled onto 0..20 when ``max_attempts`` is above
20, plus up to 10% of that added as jitter (compat_fixtures ``backoff.txt``; INTEROP §2.9).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

#: Above this many attempts the attempt number is scaled onto 0..CLAMPED_MAX.
CLAMPED_MAX = 20
MIN_PAD = 15
MAX_POW = 100
JITTER_MULT = 0.1


def round_half_away(value: float) -> int:
    """Elixir's ``round/1``: halves go away from zero (Python's ``round`` goes to even)."""
    magnitude = abs(value)
    whole = math.floor(magnitude)
    # Comparing the fraction (exact for floats) avoids the rounding error of floor(x + 0.5).
    result = whole + 1 if magnitude - whole >= 0.5 else whole
    return -result if value < 0 else result


def clamped_attempt(attempt: int, max_attempts: int) -> int:
    if max_attempts <= CLAMPED_MAX:
        return attempt
    return round_half_away(attempt / max_attempts * CLAMPED_MAX)


def base_delay(attempt: int, max_attempts: int) -> int:
    """The delay before jitter: ``15 + 2 ** clamped_attempt`` seconds."""
    power: int = 2 ** min(clamped_attempt(attempt, max_attempts), MAX_POW)
    return MIN_PAD + power


def jitter(time: int, rand: Callable[[], float] = random.random) -> int:
    """``Oban.Backoff.jitter(time, mode: :inc)``: ``time + trunc(rand * 0.1 * time)``."""
    return time + math.trunc(rand() * JITTER_MULT * time)


def default_backoff(
    attempt: int, max_attempts: int, rand: Callable[[], float] = random.random
) -> int:
    """Seconds until the retry of ``attempt`` (the one that just failed), as Elixir computes it."""
    return jitter(base_delay(attempt, max_attempts), rand)
