"""oban_py.testing from plain ``def`` tests (Flask, scripts), and inline jobs that wait for the
caller's commit whatever connection the caller enqueued on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from oban_py import Job, Worker
from oban_py.job.errors import ObanError
from oban_py.testing import (
    TestingClient,
    all_enqueued,
    all_enqueued_sync,
    assert_enqueued,
    assert_enqueued_sync,
    drain_queue,
    drain_queue_sync,
    perform_job,
    perform_job_sync,
    refute_enqueued,
    refute_enqueued_sync,
    reset,
    reset_sync,
)

pytest_plugins = ("pytester",)

seen: list[tuple[str, Any]] = []


class Receipt(Worker):
    """Formats its job id the way application code does, and reads the order it is about."""

    name = "SyncTesting.Receipt"
    queue = "receipts"
    dsn = ""

    def process(self, job: Job) -> str:
        found = None
        if self.dsn:
            with psycopg.connect(self.dsn) as conn:
                row = conn.execute("SELECT 1 FROM orders WHERE id = %s", [job.args["order"]])
                found = row.fetchone()
        seen.append(("receipt", job.args["order"], found is not None))
        return f"receipt-{job.id:06d}"


class Fails(Worker):
    name = "SyncTesting.Fails"

    def process(self, job: Job) -> None:
        raise RuntimeError("card declined")


class ReturnsAnError(Worker):
    """Returns an exception object as its value: the job completes, as on a node."""

    name = "SyncTesting.ReturnsAnError"
    queue = "receipts"

    def process(self, job: Job) -> ValueError:
        return ValueError("a value, not a failure")


@pytest.fixture(autouse=True)
def forget() -> None:
    seen.clear()
    Receipt.dsn = ""


@pytest.fixture
def orders(dsn: str) -> str:
    Receipt.dsn = dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    return dsn


@pytest.fixture
def manual(dsn: str) -> Iterator[TestingClient]:
    client = TestingClient("manual", dsn=dsn)
    yield client
    client.close_sync()


# -- async helpers outside an event loop -------------------------------------------------------


@pytest.mark.parametrize(
    ("helper", "call"),
    [
        ("assert_enqueued", lambda: assert_enqueued(worker="No.Such.Worker")),
        ("refute_enqueued", lambda: refute_enqueued(worker=Receipt)),
        ("all_enqueued", lambda: all_enqueued()),
        ("drain_queue", lambda: drain_queue(None, "receipts")),
        ("perform_job", lambda: perform_job(Receipt, {"order": 1})),
        ("reset", lambda: reset()),
    ],
)
def test_an_async_helper_called_from_a_sync_test_fails_naming_its_sync_twin(
    helper: str, call: Any
) -> None:
    with pytest.raises(RuntimeError, match=rf"{helper}\(\) is async.*call {helper}_sync\(\)"):
        call()


USER_TEST = """
from oban_py.testing import assert_enqueued

def test_checks_nothing():
    assert_enqueued(worker="No.Such.Worker")
"""


def test_a_forgotten_await_in_a_plain_def_test_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*call assert_enqueued_sync() from sync code*"])


# -- the sync twins ------------------------------------------------------------------------------


def test_sync_assertions_check_the_table(manual: TestingClient) -> None:
    Receipt.enqueue_sync({"order": 7}, tags=["Shop"])

    job = assert_enqueued_sync(worker=Receipt, args={"order": 7}, tags=["shop"])
    assert job.queue == "receipts"
    assert [j.id for j in all_enqueued_sync(queue="receipts")] == [job.id]
    refute_enqueued_sync(worker=Receipt, args={"order": 8})
    with pytest.raises(AssertionError, match=r"worker='SyncTesting.Receipt'.*#\d+"):
        assert_enqueued_sync(worker=Receipt, args={"order": 8})
    with pytest.raises(AssertionError, match="Expected no job matching"):
        refute_enqueued_sync(worker=Receipt)


def test_a_worker_returning_an_exception_object_completes_in_every_helper(
    manual: TestingClient,
) -> None:
    # The node records such a job completed: no helper may raise the value as a failure.
    done = perform_job_sync(ReturnsAnError, {})
    assert done.state == "completed"
    assert done.exception is None
    assert isinstance(done.result, ValueError)
    ReturnsAnError.enqueue_sync({})
    assert drain_queue_sync(manual, "receipts", with_safety=False)["completed"] == 1
    inline = TestingClient("inline")
    try:
        assert ReturnsAnError.enqueue_sync({}).state == "completed"
    finally:
        inline.close_sync()


def test_a_raised_error_is_raised_by_the_helpers_without_an_unrelated_chained_one() -> None:
    with pytest.raises(RuntimeError, match="card declined") as raised:
        perform_job_sync(Fails, {})
    assert raised.value.__context__ is None
    inline = TestingClient("inline")
    try:
        with pytest.raises(RuntimeError, match="card declined") as raised:
            Fails.enqueue_sync({})
        assert raised.value.__context__ is None, "no 'no running event loop' before it"
    finally:
        inline.close_sync()


@pytest.mark.parametrize("mode", ["inline", "disabled"])
@pytest.mark.parametrize(
    "job",
    [
        Job(worker="SyncTesting.Receipt", args={"order": "1\x00"}),
        Job(worker="SyncTesting.Receipt", args={"nested": [{"k\x00": 1}]}),
        Job(worker="SyncTesting.Receipt", meta={"m": "\x00"}),
        Job(worker="SyncTesting.Receipt", tags=["a\x00b"]),
    ],
)
def test_a_job_postgresql_would_refuse_is_refused_in_inline_and_disabled_modes_too(
    mode: str, job: Job
) -> None:
    client = TestingClient(mode)  # type: ignore[arg-type]
    try:
        with pytest.raises(ValueError, match="NUL character"):
            client.enqueue_sync(job)
    finally:
        client.close_sync()
    assert seen == []


def test_assert_enqueued_takes_a_naive_scheduled_at_as_utc(manual: TestingClient) -> None:
    when = datetime.now(UTC) + timedelta(hours=1)
    manual.enqueue_sync(Receipt.new({"order": 3}, scheduled_at=when))
    found = assert_enqueued_sync(worker=Receipt, scheduled_at=when.replace(tzinfo=None))
    assert found.args == {"order": 3}
    refute_enqueued_sync(
        worker=Receipt, scheduled_at=(when + timedelta(hours=1)).replace(tzinfo=None)
    )


def test_drain_queue_sync_runs_jobs_as_a_node_and_leaves_rows_as_it_would(
    manual: TestingClient,
) -> None:
    Receipt.enqueue_sync({"order": 1})
    Fails.enqueue_sync({}, queue="receipts", max_attempts=1)

    assert drain_queue_sync(manual, "receipts") == {
        "completed": 1,
        "discarded": 1,
        "cancelled": 0,
        "retryable": 0,
        "snoozed": 0,
    }
    failed = assert_enqueued_sync(worker=Fails, state="discarded")
    assert failed.errors[0]["error"].startswith("** (RuntimeError) card declined")
    # Twice in a row: the drain's own loop and pool are gone, the client still works.
    Receipt.enqueue_sync({"order": 2})
    assert drain_queue_sync(manual, "receipts", scoped=True)["completed"] == 1


def test_reset_sync_deletes_only_this_clients_jobs_when_scoped(
    manual: TestingClient, dsn: str
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_jobs (worker, queue, args) VALUES ('Other.Test', 'receipts', '{}')"
        )
    Receipt.enqueue_sync({"order": 1})

    assert reset_sync(manual, scoped=True) == 1
    assert [j.worker for j in all_enqueued_sync()] == ["Other.Test"]
    assert reset_sync(manual) == 1


def test_perform_job_gives_the_job_an_id_as_a_node_does() -> None:
    outcome = perform_job_sync(Receipt, {"order": 3})

    assert outcome.state == "completed"
    assert outcome.job.id is not None
    assert outcome.result == f"receipt-{outcome.job.id:06d}"
    assert perform_job_sync(Receipt, {"order": 3}, id=42).result == "receipt-000042"
    with pytest.raises(RuntimeError, match="card declined"):
        perform_job_sync(Fails, {})


async def test_perform_job_async_gives_an_id_too() -> None:
    first = await perform_job(Receipt, {"order": 1})
    second = await perform_job(Receipt, {"order": 1})
    assert first.job.id != second.job.id


# -- inline mode waits for the caller's commit -------------------------------------------------


def test_inline_enqueue_sync_on_the_callers_connection_runs_after_its_commit(orders: str) -> None:
    client = TestingClient("inline", dsn=orders)
    try:
        with psycopg.connect(orders) as conn:
            with conn.transaction():
                conn.execute("INSERT INTO orders VALUES (1)")
                Receipt.enqueue_sync({"order": 1}, conn)
                assert seen == []
            ran = client.settle_sync()
            assert seen == [("receipt", 1, True)]
            assert [j.state for j in ran] == ["completed"]

            with conn.transaction(force_rollback=True):
                conn.execute("INSERT INTO orders VALUES (2)")
                Receipt.enqueue_sync({"order": 2}, conn)
            client.settle_sync()
            assert seen == [("receipt", 1, True)]
    finally:
        client.close_sync()


@pytest.mark.parametrize("lent", [False, True], ids=["callers_connection", "lent_connection"])
def test_inline_jobs_of_a_savepoint_run_only_if_it_commits_with_its_transaction(
    orders: str, lent: bool
) -> None:
    # As in production: the savepoint's insert goes with its rollback, whatever the outer
    # transaction does, and a released savepoint's commits with it.
    client = TestingClient("inline", dsn=orders)
    try:
        with client.connection_sync() if lent else psycopg.connect(orders) as conn:
            with conn.transaction():
                with conn.transaction(force_rollback=True):
                    Receipt.enqueue_sync({"order": 31}, conn)
                with conn.transaction():
                    conn.execute("INSERT INTO orders VALUES (32)")
                    Receipt.enqueue_sync({"order": 32}, conn)
                Receipt.enqueue_sync({"order": 33}, conn)
            client.settle_sync()
        client.settle_sync()
        assert sorted(seen) == [("receipt", 32, True), ("receipt", 33, False)]
    finally:
        client.close_sync()


def test_settle_names_a_transaction_still_open(orders: str) -> None:
    client = TestingClient("inline", dsn=orders)
    try:
        with psycopg.connect(orders) as conn, conn.transaction(force_rollback=True):
            Receipt.enqueue_sync({"order": 1}, conn)
            with pytest.raises(ObanError, match="still wait for transaction"):
                client.settle_sync(timeout=0.1)
        client.settle_sync()
        assert seen == []
    finally:
        client.close_sync()


def test_a_held_job_that_raises_is_raised_by_settle(orders: str) -> None:
    client = TestingClient("inline", dsn=orders)
    try:
        with psycopg.connect(orders) as conn, conn.transaction():
            Fails.enqueue_sync({}, conn)
        with pytest.raises(RuntimeError, match="card declined"):
            client.settle_sync()
        assert [j.state for j in client.performed] == ["retryable"]
    finally:
        client.close_sync()


def test_inline_on_a_connection_the_client_lent_runs_when_it_comes_back(orders: str) -> None:
    client = TestingClient("inline", dsn=orders)
    try:
        with client.connection_sync() as conn:
            with conn.transaction():
                conn.execute("INSERT INTO orders VALUES (5)")
                Receipt.enqueue_sync({"order": 5}, conn)
            assert seen == []
        # No settle needed: it ran as the connection went back to the pool.
        assert seen == [("receipt", 5, True)]

        def failing_view() -> None:
            with client.connection_sync() as conn, conn.transaction():
                Receipt.enqueue_sync({"order": 6}, conn)
                raise RuntimeError("the view failed")

        with pytest.raises(RuntimeError):
            failing_view()
        assert len(seen) == 1
    finally:
        client.close_sync()


async def test_inline_enqueue_on_the_callers_async_connection_runs_after_its_commit(
    orders: str,
) -> None:
    client = TestingClient("inline", dsn=orders)
    try:
        async with await psycopg.AsyncConnection.connect(orders) as conn:
            async with conn.transaction():
                await conn.execute("INSERT INTO orders VALUES (9)")
                await Receipt.enqueue({"order": 9}, conn)
                assert seen == []
            await client.settle()
        assert seen == [("receipt", 9, True)]
    finally:
        await client.close()


def test_inline_without_a_database_still_waits_for_the_callers_commit(orders: str) -> None:
    client = TestingClient("inline")
    try:
        with psycopg.connect(orders) as conn, conn.transaction():
            conn.execute("INSERT INTO orders VALUES (3)")
            Receipt.enqueue_sync({"order": 3}, conn)
        client.settle_sync()
        assert seen == [("receipt", 3, True)]
    finally:
        client.close_sync()


def test_inline_on_a_connection_not_in_autocommit_waits_for_its_commit(orders: str) -> None:
    # The enqueue begins the connection's transaction, as an insert would in manual mode.
    client = TestingClient("inline", dsn=orders)
    try:
        with psycopg.connect(orders) as conn:
            Receipt.enqueue_sync({"order": 4}, conn)
            conn.execute("INSERT INTO orders VALUES (4)")
            assert seen == []
        client.settle_sync()  # leaving the block committed
        assert seen == [("receipt", 4, True)]

        with psycopg.connect(orders, autocommit=True) as conn:
            Receipt.enqueue_sync({"order": 5}, conn)
            assert seen[-1] == ("receipt", 5, False)  # autocommit: at once, nothing to wait for
    finally:
        client.close_sync()
