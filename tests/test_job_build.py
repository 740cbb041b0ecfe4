"""Building a Job: the direct path for plain inputs builds exactly what pydantic's validation
builds, and leaves every other input (and every error) to it."""

from __future__ import annotations

import copy
import math
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from oban_py.job.errors import InvalidArgs
from oban_py.job.model import Job
from oban_py.worker import Worker

# Poison among the plain: blank, NUL, lone surrogates, over-long names, bools where ints go,
# integers wider than 64 bits, non-finite floats, non-text keys, tuples, nested values.
TEXT = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " ", "\t\n", "a\x00b", "\udcff", "x" * 127, "x" * 128, "Ünï"]),
)
# The bounds of priority and max_attempts, drawn often: a mistake there must show.
BOUND = st.sampled_from([-1, 0, 1, 9, 10, 20])
NUMBER = st.one_of(
    BOUND,
    BOUND,
    st.integers(min_value=-3, max_value=12),
    st.sampled_from([True, False, 2**64, -(2**63) - 1, 10**30, 1.5, "3"]),
    st.floats(allow_nan=True, allow_infinity=True),
)
SCALAR = st.one_of(st.none(), TEXT, NUMBER)
VALUE = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(TEXT, inner, max_size=3),
    ),
    max_leaves=6,
)
OBJECT = st.one_of(
    st.dictionaries(TEXT, VALUE, max_size=4),
    st.dictionaries(st.one_of(st.integers(), TEXT), SCALAR, max_size=2),
    st.sampled_from([None, [], "{}", ("a", 1)]),
)
# Valid values mostly, so that the other fields' mistakes are not hidden behind an error.
NAME = st.one_of(st.sampled_from(["W", "MyApp.Worker", "mailers"]), TEXT)
PLAIN = st.dictionaries(st.text(max_size=3), st.one_of(st.none(), st.integers(), st.text()))
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "worker": NAME,
    "queue": NAME,
    "args": st.one_of(PLAIN, OBJECT),
    "meta": st.one_of(PLAIN, OBJECT),
    "priority": NUMBER,
    "max_attempts": NUMBER,
    "tags": st.one_of(
        st.lists(TEXT, max_size=4), st.tuples(TEXT), st.just(["A", 1]), st.just("a"), st.none()
    ),
}


def by_pydantic(data: dict[str, Any]) -> Job:
    job = Job.__new__(Job)
    BaseModel.__init__(job, **data)
    return job


def outcome(build: Any, data: dict[str, Any]) -> tuple[str, Any]:
    try:
        job = build(data)
    except ValidationError as error:
        return "invalid", [(e["loc"], e["type"], e["msg"]) for e in error.errors()]
    # repr tells 1 from True from 1.0 where == does not; nan is written the same in both.
    return "built", (repr(job.__dict__), job.model_fields_set, job.__pydantic_private__)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {"worker": FIELDS["worker"]},
        optional={k: v for k, v in FIELDS.items() if k != "worker"},
    )
)
def test_the_direct_path_builds_what_validation_builds(data: dict[str, Any]) -> None:
    assert outcome(lambda d: Job(**d), data) == outcome(by_pydantic, data)


def test_plain_args_are_copied_and_checked() -> None:
    args = {"n": 1, "s": "x"}
    job = Job(worker="W", args=args)
    args["n"] = 2
    assert job.args == {"n": 1, "s": "x"}
    # Serialising is the check even on the direct path: a lone surrogate is refused at once.
    with pytest.raises(ValidationError, match="args must serialise to JSON"):
        Job(worker="W", args={"path": "\udcff"})
    # JSON has no NaN: the job holds what the database will (null), as validation gives.
    assert Job(worker="W", args={"x": math.nan}).args == {"x": None}


# A worker's options, valid and not: Worker.new validates them once per class, then only args.
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "queue": NAME,
        "priority": NUMBER,
        "max_attempts": NUMBER,
        "tags": st.one_of(st.lists(TEXT, max_size=3), st.just(["B", " a "])),
        "meta": st.one_of(PLAIN, st.just({"nested": {"n": [1, 2**70]}})),
        "unique": st.sampled_from([{"period": 60}, {"fields": ["args"], "keys": ["a"]}]),
        "replace": st.just({"scheduled": ["args", "priority"]}),
    },
)


@settings(max_examples=300, deadline=None)
@given(OPTIONS, st.one_of(st.none(), PLAIN, OBJECT), st.integers(min_value=1, max_value=3))
def test_worker_new_builds_what_validating_every_option_builds(
    options: dict[str, Any], args: Any, calls: int
) -> None:
    cls = type("Built", (Worker,), dict(options))
    plain = {} if args is None else args
    for _ in range(calls):  # the first call makes the template, later ones use it
        if not isinstance(plain, dict):
            with pytest.raises(InvalidArgs, match="args must be a JSON object"):
                cls.new(args)
            continue
        given = {**options, "worker": cls.__oban_name__, "args": plain}
        assert outcome(cls.new, args) == outcome(by_pydantic, given)


def test_a_job_from_worker_new_shares_no_mutable_value_with_its_worker_or_siblings() -> None:
    cls = type("Shared", (Worker,), {"tags": ["t"], "meta": {"m": {"n": 1}}})
    first, second = cls.new({"a": [1]}), cls.new({"a": [1]})
    first.tags.append("u")
    first.meta["m"]["n"] = 2
    first.args["a"].append(2)
    first.errors.append({})
    first.model_fields_set.add("priority")
    assert (second.tags, second.meta, second.args, second.errors) == (
        ["t"],
        {"m": {"n": 1}},
        {"a": [1]},
        [],
    )
    assert second.model_fields_set == {"tags", "meta", "worker", "args"}
    assert cls.new().meta == {"m": {"n": 1}}


def test_jobs_built_together_keep_their_empty_values_apart_through_copies_and_pickles() -> None:
    # Built jobs share one empty meta, tags and errors until read (``job.shared``): a copy or a
    # pickle of several at once must still give each its own.
    cls = type("Empty", (Worker,), {})
    built = [cls.new({"n": 1}), cls.new({"n": 1}), Job(worker="W")]
    for copies in (copy.deepcopy(built), pickle.loads(pickle.dumps(built))):
        copies[0].meta["k"] = 1
        copies[0].tags.append("t")
        copies[0].errors.append({})
        assert [(j.meta, j.tags, j.errors) for j in copies[1:]] == [({}, [], [])] * 2
        assert [(j.meta, j.tags, j.errors) for j in built] == [({}, [], [])] * 3


def test_a_shared_empty_value_refuses_change_where_the_job_is_bypassed() -> None:
    job = Job(worker="W")
    dumped = job.model_dump()
    assert [dumped[name].__class__ for name in ("meta", "tags", "errors")] == [dict, list, list]
    for name, change in (
        ("meta", lambda value: value.update(k=1)),
        ("tags", lambda value: value.append("t")),
        ("errors", lambda value: value.extend([{}])),
    ):
        with pytest.raises(TypeError, match="shared empty value"):
            change(job.__dict__[name])
        getattr(job, name)  # read through the job: its own from now on
        change(job.__dict__[name])
    assert (job.meta, job.tags, job.errors) == ({"k": 1}, ["t"], [{}])
