"""Elixir's default backoff (compat_fixtures/backoff.txt, backoff_observations.json)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from conftest import FIXTURES

from oban_py.job.backoff import base_delay, clamped_attempt, default_backoff, round_half_away


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "base"),
    [
        (1, 20, 17),
        (2, 20, 19),
        (3, 20, 23),
        (4, 20, 31),
        (5, 20, 47),
        (10, 20, 15 + 1024),
        (20, 20, 15 + 2**20),
        (1, 5, 17),
        (1, 100, 16),
        (2, 100, 16),
        (3, 100, 17),
        (5, 100, 17),
        (8, 100, 19),
        (100, 100, 15 + 2**20),
    ],
)
def test_base_delay_is_15_plus_two_to_the_clamped_attempt(
    attempt: int, max_attempts: int, base: int
) -> None:
    assert base_delay(attempt, max_attempts) == base
    assert default_backoff(attempt, max_attempts, rand=lambda: 0.0) == base


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "clamped"),
    [(5, 40, 3), (1, 40, 1), (3, 40, 2), (15, 40, 8), (7, 40, 4), (1, 21, 1), (10, 21, 10)],
)
def test_clamped_attempt_rounds_half_away_from_zero(
    attempt: int, max_attempts: int, clamped: int
) -> None:
    assert clamped_attempt(attempt, max_attempts) == clamped


def test_round_half_away_differs_from_python_round_on_halves() -> None:
    assert [round_half_away(x) for x in (0.5, 1.5, 2.5, -2.5, 2.4999, 0.49999999999999994)] == [
        1,
        2,
        3,
        -3,
        2,
        0,
    ]


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999999])
@pytest.mark.parametrize(("attempt", "max_attempts"), [(1, 20), (5, 20), (7, 100), (19, 20)])
def test_jitter_adds_trunc_of_rand_times_a_tenth_of_base(
    rand: float, attempt: int, max_attempts: int
) -> None:
    base = base_delay(attempt, max_attempts)
    delay = default_backoff(attempt, max_attempts, rand=lambda: rand)
    assert delay == base + int(rand * 0.1 * base)
    assert base <= delay <= base + int(0.1 * base)


def test_default_rand_stays_within_the_jitter_bounds() -> None:
    for _ in range(200):
        assert 47 <= default_backoff(5, 20) <= 51


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix("Z"))


def test_observed_elixir_delays_fall_in_base_to_base_plus_jitter() -> None:
    rows = json.loads((FIXTURES / "backoff_observations.json").read_text())
    retried = [r for r in rows if r["state"] == "retryable"]
    assert len(retried) >= 15
    for row in retried:
        base = base_delay(row["attempt"], row["max_attempts"])
        # errors[].at is taken microseconds after the instant scheduled_at was computed from.
        delay = round((_parse(row["scheduled_at"]) - _parse(row["error_at"])).total_seconds())
        assert base <= delay <= base + int(0.1 * base), row
