"""A worker's retry policy: which errors retry, which discard at once, and its own backoff."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from nodekit import insert, wait_state
from pydantic import BaseModel

from oban_py import InvalidArgs, Job, Oban, Worker, worker


class NotFound(Exception):
    pass


class Flaky(Exception):
    pass


class Discards(Worker):
    name = "Py.Policy.Discards"
    discard_on = (NotFound, InvalidArgs)

    async def process(self, job: Job) -> None:
        raise NotFound(f"account {job.args.get('account')} is gone")


class Account(BaseModel):
    account_id: int


class TypedDiscards(Worker):
    name = "Py.Policy.TypedDiscards"
    args_model = Account
    discard_on = (InvalidArgs,)

    async def process(self, job: Job) -> None:
        pass


class OnlyFlaky(Worker):
    name = "Py.Policy.OnlyFlaky"
    retry_on = (Flaky,)

    def process(self, job: Job) -> None:
        raise (Flaky if job.args.get("flaky") else ValueError)("nope")


@worker(name="Py.Policy.Decorated", backoff=lambda job: 3600 * job.attempt, discard_on=(KeyError,))
class Decorated:
    async def process(self, job: Job) -> None:
        if job.args.get("key"):
            raise KeyError("missing")
        raise RuntimeError("try again")


class Decides(Worker):
    name = "Py.Policy.Decides"

    def should_retry(self, job: Job, error: BaseException) -> bool:
        return job.attempt < 2

    async def process(self, job: Job) -> None:
        raise RuntimeError("boom")


class BrokenPolicy(Worker):
    name = "Py.Policy.Broken"

    def should_retry(self, job: Job, error: BaseException) -> bool:
        raise ZeroDivisionError

    async def process(self, job: Job) -> None:
        raise RuntimeError("boom")


def node(dsn: str, **opts: Any) -> Oban:
    return Oban(dsn=dsn, queues={"default": 5}, peer=False, name="Oban", node="py-policy", **opts)


async def outcome(dsn: str, conn: Any, worker_name: str, args: Any = None, **opts: Any) -> Any:
    job_id = await insert(conn, worker_name, args or {}, max_attempts=20)
    async with node(dsn, **opts):
        return await wait_state(conn, job_id, "retryable", "discarded")


async def test_an_error_in_discard_on_discards_on_the_first_attempt(dsn: str, conn: Any) -> None:
    got = await outcome(dsn, conn, Discards.name, {"account": 7})
    assert got["state"] == "discarded"
    assert got["attempt"] == 1
    assert got["discarded_at"] is not None
    assert got["errors"][0]["error"].startswith("** (test_retry_policy.NotFound) account 7 is gone")


async def test_invalid_args_can_discard_at_once(dsn: str, conn: Any) -> None:
    got = await outcome(dsn, conn, TypedDiscards.name, {"account_id": "not a number"})
    assert got["state"] == "discarded"
    assert "args do not match Account" in got["errors"][0]["error"]


async def test_retry_on_retries_only_the_errors_it_names(dsn: str, conn: Any) -> None:
    assert (await outcome(dsn, conn, OnlyFlaky.name, {"flaky": True}))["state"] == "retryable"
    assert (await outcome(dsn, conn, OnlyFlaky.name, {"flaky": False}))["state"] == "discarded"


async def test_the_decorator_takes_a_backoff_and_discard_on(dsn: str, conn: Any) -> None:
    retried = await outcome(dsn, conn, "Py.Policy.Decorated")
    assert retried["state"] == "retryable"
    delay = datetime.fromisoformat(retried["scheduled_at"]) - datetime.fromisoformat(
        retried["attempted_at"]
    )
    assert 3590 < delay.total_seconds() < 3610  # the worker's backoff, not Elixir's 17 s
    assert (await outcome(dsn, conn, "Py.Policy.Decorated", {"key": 1}))["state"] == "discarded"


async def test_should_retry_decides_per_attempt_and_a_broken_one_retries(
    dsn: str, conn: Any
) -> None:
    assert (await outcome(dsn, conn, Decides.name))["state"] == "retryable"
    job_id = await insert(conn, Decides.name, attempt=1)
    async with node(dsn):
        assert (await wait_state(conn, job_id, "retryable", "discarded"))["state"] == "discarded"
    assert (await outcome(dsn, conn, BrokenPolicy.name))["state"] == "retryable"


async def test_an_unknown_worker_retries_by_default_and_discards_when_asked(
    dsn: str, conn: Any
) -> None:
    assert (await outcome(dsn, conn, "Nowhere.Worker"))["state"] == "retryable"
    got = await outcome(dsn, conn, "Nowhere.Worker", discard_unknown_workers=True)
    assert got["state"] == "discarded"
    assert got["errors"][0]["error"] == "** (RuntimeError) unknown worker: Nowhere.Worker"


def test_the_default_policy_retries_everything_as_elixir_does() -> None:
    assert Worker().should_retry(Job(worker="W"), RuntimeError())
    assert Discards().should_retry(Job(worker="W"), RuntimeError())
    assert not Discards().should_retry(Job(worker="W"), NotFound())
