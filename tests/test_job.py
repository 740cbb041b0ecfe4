"""Job: validation on creation (with the messages a user sees), and rows read without it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from pydantic import ValidationError

from oban_py.job.model import Job, schedule_delay
from tests.conftest import FIXTURES

TIMESTAMPS = ("inserted_at", "scheduled_at", "attempted_at", "completed_at", "discarded_at")


def same_row(ours: dict[str, object], theirs: dict[str, object]) -> bool:
    """Equal rows; row_to_json drops trailing zeros of microseconds, so compare times as times."""

    def norm(row: dict[str, object]) -> dict[str, object]:
        out = dict(row)
        for key in (*TIMESTAMPS, "cancelled_at"):
            if isinstance(out.get(key), str):
                out[key] = datetime.fromisoformat(str(out[key]))
        return out

    return norm(ours) == norm(theirs)


def errors_of(**values: object) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        Job(**values)  # type: ignore[arg-type]
    return {".".join(map(str, e["loc"])): e["msg"] for e in caught.value.errors()}


def test_defaults_are_elixirs() -> None:
    job = Job(worker="MyApp.Worker")
    assert (job.state, job.queue, job.attempt, job.max_attempts, job.priority) == (
        "available",
        "default",
        0,
        20,
        0,
    )
    assert (job.args, job.meta, job.tags, job.errors) == ({}, {}, [], [])
    assert job.scheduled_at is None
    assert job.attempted_by is None
    assert not job.conflict


def test_blank_worker_and_queue_are_rejected_by_name() -> None:
    assert errors_of(worker=" ", queue="") == {
        "worker": "Value error, must not be blank",
        "queue": "Value error, must not be blank",
    }


def test_queue_longer_than_the_database_allows_is_rejected() -> None:
    assert Job(worker="w", queue="q" * 127).queue == "q" * 127
    assert errors_of(worker="w", queue="q" * 128) == {
        "queue": "Value error, must be at most 127 characters, got 128"
    }


def test_priority_must_be_0_to_9() -> None:
    assert Job(worker="w", priority=9).priority == 9
    assert errors_of(worker="w", priority=10) == {
        "priority": "Value error, must be between 0 and 9, got 10"
    }
    assert errors_of(worker="w", priority=-1) == {
        "priority": "Value error, must be between 0 and 9, got -1"
    }


def test_max_attempts_must_be_positive() -> None:
    assert errors_of(worker="w", max_attempts=0) == {
        "max_attempts": "Value error, must be greater than 0, got 0"
    }


def test_args_and_meta_must_be_json_objects() -> None:
    assert errors_of(worker="w", args=[1]) == {
        "args": "Value error, args must be a JSON object (a dict), got list"
    }
    assert errors_of(worker="w", meta={1: "x"}) == {
        "meta": "Value error, meta must serialise to JSON: Dict key must be str"
    }
    assert errors_of(worker="w", args={"x": object()})["args"].startswith(
        "Value error, args must serialise to JSON"
    )


def test_args_hold_what_the_database_will_hold() -> None:
    assert Job(worker="w", args={"t": (1, 2)}).args == {"t": [1, 2]}


def test_tags_are_stripped_lowercased_deduplicated_and_sorted() -> None:
    assert Job(worker="w", tags=[" Urgent", "billing", "", "  ", "URGENT"]).tags == [
        "billing",
        "urgent",
    ]
    assert errors_of(worker="w", tags="urgent") == {
        "tags": "Value error, must be a list of strings"
    }


def test_schedule_in_seconds_or_timedelta_makes_a_scheduled_job() -> None:
    before = datetime.now(UTC)
    job = Job(worker="w", schedule_in=60)
    assert job.state == "scheduled"
    assert job.scheduled_at is not None
    assert before + timedelta(seconds=59) < job.scheduled_at < before + timedelta(seconds=62)
    assert Job(worker="w", schedule_in=timedelta(hours=1)).state == "scheduled"


def test_schedule_in_is_inserted_as_a_delay_until_scheduled_at_is_changed() -> None:
    job = Job(worker="w", schedule_in=1.5)
    assert schedule_delay(job) == 1_500_000
    moved = job.model_copy(update={"scheduled_at": datetime(2030, 1, 1, tzinfo=UTC)})
    assert schedule_delay(moved) is None
    assert schedule_delay(Job(worker="w", scheduled_at=datetime(2030, 1, 1, tzinfo=UTC))) is None
    assert schedule_delay(Job(worker="w")) is None


def test_scheduled_at_makes_a_scheduled_job_in_utc() -> None:
    at = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    job = Job(worker="w", scheduled_at=at)
    assert job.state == "scheduled"
    assert job.scheduled_at == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert job.scheduled_at.tzinfo is UTC


def test_schedule_in_and_scheduled_at_together_are_rejected() -> None:
    assert errors_of(worker="w", schedule_in=5, scheduled_at=datetime.now(UTC)) == {
        "": "Value error, give either schedule_in or scheduled_at, not both"
    }


def test_unique_true_means_forever_and_bad_options_name_the_field() -> None:
    job = Job(worker="w", unique=True)
    assert job.unique is not None
    assert job.unique.period is None
    problems = errors_of(worker="w", unique={"states": "finished"})
    assert "unknown unique state group 'finished'" in problems["unique.states"]


def test_a_worker_class_becomes_its_name() -> None:
    class Named:
        __oban_name__ = "MyApp.Named"

    assert Job(worker=Named).worker == "MyApp.Named"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    ["insert_plain", "insert_scheduled", "retryable_raise", "executing", "cancelled_by_worker"],
)
def test_from_row_reads_elixir_rows_without_loss(name: str) -> None:
    row = json.loads((FIXTURES / "jobs" / f"{name}.json").read_text())
    job = Job.from_row(row)
    assert same_row(job.to_row(), row)
    assert job.inserted_at is not None
    assert job.inserted_at.tzinfo is UTC


def test_cancellation_flag_starts_clear_and_stays_set() -> None:
    job = Job.from_row({"id": 1, "worker": "w", "state": "executing"})
    assert not job.cancelled()
    job._cancel()
    assert job.cancelled()
    assert not Job(worker="w").cancelled()


@pytest.mark.parametrize(
    ("stored", "rendered"),
    [
        ("2026-11-23 12:52:36.967250", "2026-11-23T12:52:36.96725"),
        ("2026-11-23 12:52:36.5", "2026-11-23T12:52:36.5"),
        ("2026-11-23 12:52:36", "2026-11-23T12:52:36"),
        ("2026-11-23 12:52:36.000001", "2026-11-23T12:52:36.000001"),
    ],
)
async def test_to_row_writes_timestamps_as_row_to_json_does(
    conn: psycopg.AsyncConnection, stored: str, rendered: str
) -> None:
    cur = await conn.execute(
        "SELECT row_to_json(t)->>'at' FROM (SELECT %s::timestamp AS at) t", (stored,)
    )
    assert (await cur.fetchone())[0] == rendered
    job = Job(
        worker="W", queue="q", scheduled_at=datetime.fromisoformat(stored).replace(tzinfo=UTC)
    )
    assert job.to_row()["scheduled_at"] == rendered
