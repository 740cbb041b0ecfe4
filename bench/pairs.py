"""What the interleaved A/B benchmarks share: the order of each pair's sides, and the lines that
sum up the rates and ratios of every pair."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from bench.scenarios import summary

T = TypeVar("T")


def interleaved(pairs: int, sides: Sequence[T]) -> Iterator[tuple[int, list[T]]]:
    """Each pair's number (from 1) and the order its sides run in, reversed every other pair so
    drift on a shared machine (load, caches, a growing table) falls on both sides."""
    for pair in range(pairs):
        yield pair + 1, list(sides) if pair % 2 == 0 else list(reversed(sides))


def rates_line(label: str, rates: list[float]) -> str:
    low, mid, high = summary(rates)
    return f"{label}: {low:,.0f} / {mid:,.0f} / {high:,.0f} jobs/s (min / median / max)"


def ratios_line(label: str, ratios: list[float]) -> str:
    low, mid, high = summary(ratios)
    return f"{label}: {low:.3f} / {mid:.3f} / {high:.3f}"
