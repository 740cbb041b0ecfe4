"""The shop's tests under Django's runner (``manage.py test orders``): the oban_py helpers
inside ``TestCase`` (one transaction per test) and ``TransactionTestCase`` (tables flushed)."""

from django.test import TestCase, TransactionTestCase
from oban_py_ext.django.testing import (
    all_enqueued,
    assert_enqueued,
    drain_queue,
    oban_mode,
    perform_job,
    refute_enqueued,
)

from orders.models import Order
from orders.workers import NotifyCustomer, ProcessOrder


class PlacingAnOrder(TestCase):
    def test_the_view_enqueues_both_jobs_in_the_tests_transaction(self) -> None:
        order_id = self.client.post("/orders/", {"item": "book"}).json()["id"]
        job = assert_enqueued(worker=ProcessOrder, args={"order_id": order_id})
        assert job.queue == "orders"
        assert_enqueued(worker=NotifyCustomer, args={"order_id": order_id}, queue="mail")
        refute_enqueued(worker=ProcessOrder, args={"order_id": order_id + 1})

    def test_a_sync_worker_sees_the_rows_the_test_created(self) -> None:
        order = Order.objects.create(item="pen")
        outcome = perform_job(ProcessOrder, {"order_id": order.id})
        assert outcome.state == "completed"
        order.refresh_from_db()
        assert (order.status, order.times_processed) == ("processed", 1)

    def test_an_async_worker_sees_the_rows_the_test_created(self) -> None:
        order = Order.objects.create(item="ink")
        assert perform_job(NotifyCustomer, {"order_id": order.id}).state == "completed"
        order.refresh_from_db()
        assert order.notified

    def test_a_failing_job_is_recorded_as_a_node_records_it(self) -> None:
        outcome = perform_job(ProcessOrder, {"order_id": 0}, safe=True)
        assert outcome.state == "retryable"
        assert "DoesNotExist" in (outcome.error or "")

    def test_drain_queue_runs_what_the_view_enqueued(self) -> None:
        order_id = self.client.post("/orders/", {"item": "lamp"}).json()["id"]
        assert drain_queue("orders")["completed"] == 1
        assert drain_queue("mail")["completed"] == 1
        order = Order.objects.get(id=order_id)
        assert (order.status, order.notified) == ("processed", True)
        assert all_enqueued() == []

    def test_an_inline_testing_client_runs_enqueued_jobs_once_the_view_commits(self) -> None:
        # The view enqueues inside atomic(): inline jobs wait for its commit, which TestCase
        # only plays through captureOnCommitCallbacks.
        with oban_mode("inline") as client, self.captureOnCommitCallbacks(execute=True):
            order_id = self.client.post("/orders/", {"item": "desk"}).json()["id"]
            assert client.performed == []
        order = Order.objects.get(id=order_id)
        assert (order.status, order.notified) == ("processed", True)
        assert [j.state for j in client.performed] == ["completed", "completed"]
        refute_enqueued()

    def test_a_disabled_testing_client_skips_enqueued_jobs(self) -> None:
        with oban_mode("disabled"):
            self.client.post("/orders/", {"item": "chair"})
        refute_enqueued()


class PlacingOrdersWithCommits(TransactionTestCase):
    """Each test commits for real; Django's flush empties oban_jobs between them."""

    def test_1_the_view_commits_its_jobs(self) -> None:
        self.client.post("/orders/", {"item": "book"})
        assert len(all_enqueued()) == 2

    def test_2_no_job_of_the_previous_test_is_left(self) -> None:
        refute_enqueued()
        self.client.post("/orders/", {"item": "pen"})
        assert drain_queue("orders")["completed"] == 1
        assert Order.objects.get().status == "processed"
