"""The shop's tests under pytest-django: the Django helpers with ``db`` (one transaction per
test) and ``transactional_db``, and oban_py's own ``oban_testing`` fixture."""

from typing import Any

import pytest
from django.test import Client
from oban_py import testing
from oban_py.testing import TestingClient
from oban_py_ext.django.testing import (
    assert_enqueued,
    drain_queue,
    oban_mode,
    perform_job,
    refute_enqueued,
)

from orders.models import Order
from orders.workers import NotifyCustomer, ProcessOrder


@pytest.mark.django_db
def test_the_view_enqueues_in_the_tests_transaction(client: Client) -> None:
    order_id = client.post("/orders/", {"item": "book"}).json()["id"]
    assert_enqueued(worker=ProcessOrder, args={"order_id": order_id})


@pytest.mark.django_db
def test_perform_job_sees_the_tests_rows() -> None:
    order = Order.objects.create(item="pen")
    assert perform_job(ProcessOrder, {"order_id": order.id}).state == "completed"
    assert perform_job(NotifyCustomer, {"order_id": order.id}).state == "completed"
    order.refresh_from_db()
    assert (order.status, order.notified) == ("processed", True)


@pytest.mark.django_db(transaction=True)
def test_drain_queue_with_committed_rows(client: Client) -> None:
    client.post("/orders/", {"item": "lamp"})
    assert drain_queue("orders")["completed"] == 1
    assert Order.objects.get().status == "processed"


@pytest.mark.django_db(transaction=True)
def test_the_next_transactional_test_starts_without_jobs() -> None:
    refute_enqueued()


@pytest.mark.django_db
def test_inline_mode_runs_enqueued_jobs_once_the_view_commits(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    with oban_mode("inline") as inline, django_capture_on_commit_callbacks(execute=True):
        order_id = client.post("/orders/", {"item": "desk"}).json()["id"]
        assert inline.performed == []
    assert len(inline.performed) == 2
    assert Order.objects.get(id=order_id).status == "processed"


async def test_the_oban_testing_fixture_with_a_django_database(
    oban_testing: TestingClient,
) -> None:
    await ProcessOrder.enqueue({"order_id": 7})
    job = await testing.assert_enqueued(worker=ProcessOrder, args={"order_id": 7})
    assert job.queue == "orders"
