"""Django's task framework on Oban: the Django 6 task shop (``project/``), ``django.tasks`` on
the Oban backend, a database of its own per run, migrated by Django, and ``manage.py oban
start`` in a process of its own.

These tests need Django 6 (Python 3.12+): ``python3 dev.py test`` runs them in ``.venv312``
after the main suite, which does not collect them (tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import django
import psycopg
import pytest
from conftest import create_database, drop_database, dsn_for

PROJECT = Path(__file__).resolve().parent / "project"

if django.VERSION < (6, 0):
    raise RuntimeError(
        f"tests/ext/django6 needs Django 6 (found {django.get_version()}): run them with"
        " `python3 dev.py test tests/ext/django6` (a Python 3.12 venv, .venv312)"
    )


@pytest.fixture(scope="session")
def shop_env(server_dsn: str) -> Iterator[dict[str, str]]:
    """The environment of the shop (``TASKSHOP_DSN``), Django set up and migrated in this
    process."""
    name = create_database(server_dsn)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST_"))}
    env.update(
        TASKSHOP_DSN=dsn_for(server_dsn, name),
        DJANGO_SETTINGS_MODULE="taskshop.settings",
        PYTHONPATH=str(PROJECT),
    )
    os.environ.update({k: env[k] for k in ("TASKSHOP_DSN", "DJANGO_SETTINGS_MODULE")})
    sys.path.insert(0, str(PROJECT))
    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)
    yield env
    connections.close_all()
    drop_database(server_dsn, name)


@pytest.fixture(scope="session")
def shop_dsn(shop_env: dict[str, str]) -> str:
    return shop_env["TASKSHOP_DSN"]


def manage(env: dict[str, str], *argv: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", *argv],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture(scope="session")
def node(shop_env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """``manage.py oban start`` on the shop's database, for the whole session."""
    process = manage(shop_env, "oban", "start")
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-3000:]


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``check()``'s first truthy value, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if value := check():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {check}")
        time.sleep(0.1)


def rows(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql.encode(), params).fetchall()


def result_of(result_id: str, timeout: float = 30.0) -> Any:
    """The task's result once it is finished, read back with ``default_task_backend``."""
    from django.tasks import default_task_backend

    return eventually(
        lambda: (r := default_task_backend.get_result(result_id)).is_finished and r, timeout
    )


# -- the backend -------------------------------------------------------------------------------


def test_the_backend_declares_what_it_supports(shop_env: dict[str, str]) -> None:
    from django.tasks import task_backends
    from oban_py_ext.django.tasks import ObanTaskBackend

    backend = task_backends["default"]
    assert isinstance(backend, ObanTaskBackend)
    assert backend.supports_defer
    assert backend.supports_priority
    assert backend.supports_get_result
    assert backend.supports_async_task
    assert task_backends["once"].max_attempts == 1


@pytest.mark.parametrize(
    ("django", "oban"),
    [(100, 0), (80, 0), (79, 1), (50, 2), (1, 4), (0, 4), (-1, 5), (-50, 7), (-81, 9), (-100, 9)],
)
def test_django_priorities_map_onto_obans_0_to_9_with_0_first(django: int, oban: int) -> None:
    from oban_py_ext.django.tasks import oban_priority

    assert oban_priority(django) == oban


def test_a_task_is_an_ordinary_job_row(shop_env: dict[str, str]) -> None:
    from shop.tasks import add

    result = add.using(priority=-30).enqueue(2, 3, times=4)
    assert result.status == "READY"
    assert result.enqueued_at is not None
    assert result.enqueued_at.tzinfo is not None
    assert (result.args, result.kwargs) == ([2, 3], {"times": 4})
    [row] = rows(
        shop_env["TASKSHOP_DSN"],
        "SELECT worker, queue, priority, args, max_attempts, state::text, meta"
        " FROM oban_jobs WHERE id = %s",
        [int(result.id)],
    )
    assert row[:6] == (
        "shop.tasks.add",
        "mail",
        6,
        {"args": [2, 3], "kwargs": {"times": 4}},
        20,
        "available",
    )
    assert row[6] == {"django": {"backend": "default", "priority": -30}}
    # Read back, the task is the one enqueued, with Django's own priority.
    again = add.get_result(result.id)
    assert (again.task.func, again.task.priority, again.task.queue_name) == (add.func, -30, "mail")


def test_unknown_ids_and_other_jobs_are_no_results(shop_env: dict[str, str]) -> None:
    from django.tasks import default_task_backend
    from django.tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
    from oban_py_ext.django import enqueue
    from shop.tasks import add, nothing

    from oban_py import Job

    other = enqueue(Job(worker="MyApp.Workers.Mailer"))
    for missing in ("0", "not-a-number", str(other.id), "99999999999"):
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(missing)
    result = add.enqueue(1, 1)
    with pytest.raises(TaskResultMismatch):
        nothing.get_result(result.id)


def test_arguments_that_are_not_json_are_refused_at_enqueue(shop_env: dict[str, str]) -> None:
    from shop.tasks import add

    with pytest.raises(TypeError):
        add.enqueue(object(), 1)


# -- a view enqueueing inside atomic() -----------------------------------------------------------


def test_a_view_enqueues_inside_atomic_and_a_rollback_leaves_no_job(
    shop_env: dict[str, str], node: subprocess.Popen[str]
) -> None:
    from django.test import Client
    from shop.tasks import process_order

    http = Client(raise_request_exception=False)
    placed = http.post("/orders/", {"item": "lamp"})
    assert placed.status_code == 200
    order_id, result_id = placed.json()["id"], placed.json()["result_id"]
    done = result_of(result_id)
    assert done.status == "SUCCESSFUL"
    assert done.return_value == "processed"
    assert done.args == [order_id]
    assert process_order.get_result(result_id).attempts == 1
    assert rows(
        shop_env["TASKSHOP_DSN"], "SELECT status FROM shop_order WHERE id = %s", [order_id]
    ) == [("processed",)]

    declined = http.post("/orders/", {"item": "vase", "fail": "1"})
    assert declined.status_code == 500
    assert rows(shop_env["TASKSHOP_DSN"], "SELECT 1 FROM shop_order WHERE item = 'vase'") == []
    args = rows(
        shop_env["TASKSHOP_DSN"],
        "SELECT args FROM oban_jobs WHERE worker = 'shop.tasks.process_order'",
    )
    assert [a["args"] for (a,) in args] == [[order_id]]


def test_task_enqueued_is_sent_when_the_job_commits_and_never_for_a_rollback(
    shop_env: dict[str, str],
) -> None:
    from django.db import transaction
    from django.tasks.signals import task_enqueued
    from shop.tasks import nothing

    sent: list[str] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        sent.append(task_result.id)

    def rolled_back() -> None:
        with transaction.atomic():
            nothing.enqueue()
            raise RuntimeError

    task_enqueued.connect(receiver)
    try:
        with pytest.raises(RuntimeError):
            rolled_back()
        assert sent == []
        with transaction.atomic():
            result = nothing.enqueue()
            assert sent == []
        assert sent == [result.id]
    finally:
        task_enqueued.disconnect(receiver)


def test_enqueue_inside_another_databases_atomic_is_refused(shop_env: dict[str, str]) -> None:
    from django.db import transaction
    from django.db.transaction import TransactionManagementError
    from shop.tasks import nothing

    count = "SELECT count(*) FROM oban_jobs"
    before = rows(shop_env["TASKSHOP_DSN"], count)

    # The row would commit at once, before the caller's block, and outlive its rollback.
    def view() -> None:
        with transaction.atomic(using="other"):
            nothing.enqueue()

    with pytest.raises(TransactionManagementError, match=r"transaction\.on_commit\(partial"):
        view()
    assert rows(shop_env["TASKSHOP_DSN"], count) == before


# -- results read back from the row --------------------------------------------------------------


def test_a_successful_task_returns_its_value(
    shop_env: dict[str, str], node: subprocess.Popen[str]
) -> None:
    from shop.tasks import add

    result = add.enqueue(2, 3, times=2)
    done = result_of(result.id)
    assert done.status == "SUCCESSFUL"
    assert done.return_value == {"sum": 10, "items": [2, 3]}
    assert done.errors == []
    assert done.attempts == 1
    assert done.worker_ids[0]
    assert done.started_at is not None
    assert done.finished_at is not None
    assert done.enqueued_at <= done.started_at <= done.finished_at
    # The result is recorded as Oban Pro records one: Oban Web shows it.
    [(meta,)] = rows(
        shop_env["TASKSHOP_DSN"], "SELECT meta FROM oban_jobs WHERE id = %s", [int(result.id)]
    )
    assert meta["recorded"] is True
    # refresh() reads the row again.
    result.refresh()
    assert result.return_value == {"sum": 10, "items": [2, 3]}


async def test_an_async_task_runs_and_aget_result_reads_it(
    shop_env: dict[str, str], node: subprocess.Popen[str]
) -> None:
    import asyncio

    from shop.tasks import async_greet

    result = await async_greet.aenqueue("ada")
    deadline = time.monotonic() + 30
    while not (done := await async_greet.aget_result(result.id)).is_finished:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert done.status == "SUCCESSFUL"
    assert done.return_value == "hello ada"


def test_a_failed_task_has_its_error(shop_env: dict[str, str], node: subprocess.Popen[str]) -> None:
    from shop.tasks import refuse

    result = refuse.enqueue("no stock")
    done = result_of(result.id)
    assert done.status == "FAILED"
    assert done.attempts == 1
    [error] = done.errors
    assert error.exception_class is ValueError
    assert error.exception_class_path == "builtins.ValueError"
    assert "refused: no stock" in error.traceback
    assert "shop/tasks.py" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        done.return_value  # noqa: B018


def test_a_return_value_too_large_to_record_fails_the_task_once(
    shop_env: dict[str, str], node: subprocess.Popen[str]
) -> None:
    from shop.tasks import oversized

    result = oversized.enqueue(64_000)
    done = result_of(result.id)
    # Not retried: running it again would give a value just as large.
    assert (done.status, done.attempts) == ("FAILED", 1)
    assert "cannot be recorded" in done.errors[0].traceback
    assert "32768 byte limit" in done.errors[0].traceback


def test_a_retried_task_succeeds_on_its_second_attempt_with_the_context(
    shop_env: dict[str, str], node: subprocess.Popen[str]
) -> None:
    from shop.tasks import flaky

    result = flaky.enqueue("sync-stock")
    dsn = shop_env["TASKSHOP_DSN"]
    job_id = int(result.id)
    eventually(
        lambda: rows(dsn, "SELECT 1 FROM oban_jobs WHERE id = %s AND state = 'retryable'", [job_id])
    )
    waiting = flaky.get_result(result.id)
    assert (waiting.status, waiting.attempts, waiting.is_finished) == ("READY", 1, False)
    assert waiting.errors[0].exception_class is ConnectionError
    # Oban's backoff would wait 16 s or more: due now instead.
    with psycopg.connect(dsn) as conn:
        conn.execute(b"UPDATE oban_jobs SET scheduled_at = now() WHERE id = %s", [job_id])
    done = result_of(result.id)
    assert done.status == "SUCCESSFUL"
    assert done.attempts == 2
    assert [e.exception_class_path for e in done.errors] == ["builtins.ConnectionError"]
    assert done.return_value == {"attempt": 2, "job_id": job_id, "label": "sync-stock"}


def test_a_deferred_task_waits_for_run_after(
    shop_env: dict[str, str], node: subprocess.Popen[str]
) -> None:

    from django.utils import timezone
    from shop.tasks import add

    run_after = timezone.now() + timedelta(seconds=1.5)
    result = add.using(run_after=run_after).enqueue(1, 1)
    assert result.status == "READY"
    [(state, scheduled_at)] = rows(
        shop_env["TASKSHOP_DSN"],
        "SELECT state::text, scheduled_at AT TIME ZONE 'UTC' FROM oban_jobs WHERE id = %s",
        [int(result.id)],
    )
    assert state == "scheduled"
    assert abs((scheduled_at - run_after).total_seconds()) < 0.001
    read = add.get_result(result.id)
    assert read.task.run_after == run_after
    done = result_of(result.id)
    assert done.status == "SUCCESSFUL"
    assert done.started_at >= run_after


# -- what Django's own backend tests expect, where it applies -----------------------------------


def test_an_enqueued_result_is_what_get_result_reads_back(shop_env: dict[str, str]) -> None:
    from django.tasks import default_task_backend
    from shop.tasks import add

    # Deferred: the session's node would otherwise start it between the two reads.
    deferred = add.using(run_after=datetime.now(UTC) + timedelta(hours=1))
    result = deferred.enqueue(1, 3)
    assert result.status == "READY"
    assert result.started_at is None
    assert result.finished_at is None
    with pytest.raises(ValueError, match="Task has not finished yet"):
        result.return_value  # noqa: B018
    assert result.task == deferred
    assert (result.args, result.kwargs) == ([1, 3], {})
    assert default_task_backend.get_result(result.id) == result


async def test_aget_result_of_a_missing_result_raises(shop_env: dict[str, str]) -> None:
    from django.tasks import default_task_backend
    from django.tasks.exceptions import TaskResultDoesNotExist

    with pytest.raises(TaskResultDoesNotExist):
        await default_task_backend.aget_result("123456789")


def test_enqueue_logs_the_result_id(shop_env: dict[str, str], caplog: Any) -> None:
    from shop.tasks import nothing

    with caplog.at_level("DEBUG", logger="django.tasks"):
        result = nothing.enqueue()
    [record] = [r for r in caplog.records if r.name == "django.tasks"]
    assert "enqueued" in record.getMessage()
    assert result.id in record.getMessage()


def test_invalid_tasks_are_refused_as_djangos_backends_refuse_them(
    shop_env: dict[str, str],
) -> None:

    from django.tasks.exceptions import InvalidTask
    from shop.tasks import add

    with pytest.raises(InvalidTask, match="aware"):
        add.using(run_after=datetime(2030, 1, 1))  # naive, under USE_TZ
    with pytest.raises(InvalidTask, match="priority"):
        add.using(priority=101)


def test_an_inline_testing_client_runs_a_task_at_once(shop_env: dict[str, str]) -> None:
    from oban_py_ext.django.testing import oban_mode
    from shop.tasks import add

    with oban_mode("inline") as client:
        result = add.enqueue(20, 2)
    assert [j.state for j in client.performed] == ["completed"]
    assert result.status == "SUCCESSFUL"
    assert result.return_value == {"sum": 22, "items": [20, 2]}
