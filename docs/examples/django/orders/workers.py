"""Workers of the orders app (``manage.py oban start`` imports every app's ``workers``)."""

import time

from django.db import connection
from django.db.models import F
from oban_py import Job, Worker

from orders.models import Order


class ProcessOrder(Worker):
    """A sync worker: runs in the node's thread pool, with that thread's Django connection."""

    name = "Shop.ProcessOrder"
    queue = "orders"

    def process(self, job: Job) -> None:
        order = Order.objects.get(id=job.args["order_id"])
        if job.args.get("work"):
            with connection.cursor() as cur:  # some database work of its own
                cur.execute("SELECT pg_sleep(%s)", [job.args["work"]])
        Order.objects.filter(id=order.id).update(
            status="processed", times_processed=F("times_processed") + 1
        )


class NotifyCustomer(Worker):
    """An async worker: the async ORM runs its queries in asgiref's thread-sensitive thread."""

    name = "Shop.NotifyCustomer"
    queue = "mail"

    async def process(self, job: Job) -> None:
        order = await Order.objects.aget(id=job.args["order_id"])
        await Order.objects.filter(id=order.id).aupdate(notified=True)


class PackLargeOrder(Worker):
    """A long sync job, to show what a graceful stop does with it."""

    name = "Shop.PackLargeOrder"
    queue = "orders"

    def process(self, job: Job) -> None:
        time.sleep(job.args.get("seconds", 5))
        Order.objects.filter(id=job.args["order_id"]).update(
            status="packed", times_processed=F("times_processed") + 1
        )
