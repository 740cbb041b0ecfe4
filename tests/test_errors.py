"""Errors entries and texts as Elixir writes them (compat_fixtures/jobs/*.json)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import FIXTURES

from oban_py.job.errors import (
    DatabaseUnavailable,
    InstanceNotFound,
    InvalidArgs,
    ObanError,
    SchemaError,
    UnknownWorker,
    error_entry,
    format_at,
    format_cancel,
    format_cancel_shutdown,
    format_exception,
    format_reason,
    format_timeout,
    inspect,
)
from oban_py.job.terms import Atom, decode_term


def job(name: str) -> dict[str, Any]:
    row: dict[str, Any] = json.loads((FIXTURES / "jobs" / name).read_text())
    return row


def test_entry_has_elixirs_keys_and_at_format() -> None:
    theirs = job("retryable_raise.json")["errors"][0]
    ours = error_entry(1, "** (RuntimeError) boom", datetime(2026, 11, 23, 9, 17, 7, 101730, UTC))
    assert set(ours) == set(theirs)
    assert ours["at"] == "2026-11-23T09:17:07.101730Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", theirs["at"])
    assert ours["attempt"] == theirs["attempt"] == 1


def test_at_keeps_six_digits_when_microseconds_are_zero_and_converts_to_utc() -> None:
    at = datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_at(at) == "2026-01-02T03:04:05.000000Z"
    with pytest.raises(ValueError):
        format_at(datetime(2026, 1, 2))


def test_entry_defaults_at_to_now_and_accepts_at_before_text() -> None:
    entry = error_entry(3, "x")
    at = datetime.fromisoformat(entry["at"].removesuffix("Z")).replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - at).total_seconds()) < 5
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert error_entry(3, moment, "x") == error_entry(3, "x", moment)


def test_every_errors_entry_in_the_fixtures_has_the_same_shape() -> None:
    for path in sorted((FIXTURES / "jobs").glob("*.json")):
        data = json.loads(path.read_text())
        rows = data if isinstance(data, list) else [data.get("row", data)]
        for row in rows:
            for entry in row.get("errors") or []:
                ours = error_entry(entry["attempt"], entry["error"])
                assert set(ours) == set(entry), path.name
                assert re.fullmatch(r".*\.\d{6}Z", entry["at"])


def test_exception_text_starts_like_elixirs_first_line_then_the_traceback() -> None:
    def boom() -> None:
        raise ValueError("boom")

    try:
        boom()
    except ValueError as error:
        text = format_exception(error)
    first, *rest = text.splitlines()
    assert first == "** (ValueError) boom"
    assert "in boom" in text
    assert rest
    elixir = job("retryable_raise.json")["errors"][0]["error"]
    assert elixir.startswith("** (RuntimeError) boom\n")


def test_exception_text_names_non_builtin_classes_with_their_module_and_chains_causes() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise SchemaError("outer") from inner
    except SchemaError as error:
        text = format_exception(error)
    assert text.startswith("** (oban_py.job.errors.SchemaError) outer\n")
    assert "caused by: ** (KeyError) 'inner'" in text


def test_exception_without_traceback_or_message() -> None:
    assert format_exception(RuntimeError()) == "** (RuntimeError)"


def test_reason_texts_match_elixir_perform_errors() -> None:
    assert (
        format_reason("Interop.ErrorWorker", (Atom("error"), "bad"))
        == (job("retryable_error_tuple.json")["errors"][0]["error"])
    )
    assert (
        format_cancel("Interop.CancelWorker", "nope")
        == (job("cancelled_by_worker.json")["errors"][0]["error"])
    )
    assert (
        format_cancel_shutdown("Interop.SleepWorker")
        == (job("cancelled_executing_pkill.json")["errors"][-1]["error"])
    )


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("repr boom")


class Unordered(Atom):
    def __lt__(self, other: object) -> bool:
        raise SystemExit("an ordering that raises")


def test_a_reason_that_cannot_be_inspected_still_makes_a_text_saying_so() -> None:
    assert format_cancel("W", Unprintable()) == (
        "** (Oban.PerformError) W failed with {:cancel, <Unprintable (its __repr__ raised "
        "RuntimeError)>}"
    )
    assert inspect([Unprintable()]) == "[<Unprintable (its __repr__ raised RuntimeError)>]"
    text = format_reason("W", {Unordered("a"): 1, Unordered("b"): Unprintable()})
    assert text.startswith("** (Oban.PerformError) W failed with ")


def test_timeout_text() -> None:
    assert format_timeout("MyApp.Slow", 1500) == (
        "** (Oban.TimeoutError) MyApp.Slow timed out after 1500ms"
    )


TERMS: list[dict[str, Any]] = json.loads((FIXTURES / "terms" / "terms.json").read_text())["terms"]
# Structs inspect through their own protocol (~D[...]); not rendered here.
STRUCTS = {54, 55}


@pytest.mark.parametrize(
    "sample", [t for t in TERMS if t["index"] not in STRUCTS], ids=lambda t: str(t["index"])
)
def test_inspect_matches_elixirs_inspect_of_every_captured_term(sample: dict[str, Any]) -> None:
    assert inspect(decode_term(bytes.fromhex(sample["hex"]))) == sample["inspect"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('a"b\\c\n#{x}', '"a\\"b\\\\c\\n\\#{x}"'),
        (Atom("foo bar"), ':"foo bar"'),
        (Atom("ok?"), ":ok?"),
        ({Atom("a"): 1, "b": 2}, '%{:a => 1, "b" => 2}'),
        (100.0, "100.0"),
        (1.0e21, "1.0e21"),
        (0.0001, "0.0001"),
        (1.5e-5, "1.5e-5"),
        (123456.789, "123456.789"),
        (object, repr(object)),
    ],
)
def test_inspect_edge_cases(value: Any, text: str) -> None:
    assert inspect(value) == text


def test_library_exceptions_share_a_base_and_keep_their_builtin_bases() -> None:
    for cls in (SchemaError, UnknownWorker, InvalidArgs, InstanceNotFound, DatabaseUnavailable):
        assert issubclass(cls, ObanError)
    assert issubclass(UnknownWorker, LookupError)
    assert issubclass(DatabaseUnavailable, ConnectionError)
    assert str(UnknownWorker("Python.Worker")) == "unknown worker: Python.Worker"
