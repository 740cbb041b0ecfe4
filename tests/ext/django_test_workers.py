"""Workers of the Django tests: ORM work, sync (pool threads) and async (asgiref's thread)."""

from __future__ import annotations

from oban_py import Job, Worker


class DjangoMailer(Worker):
    name = "Py.Ext.Django.Mailer"

    async def process(self, job: Job) -> None:
        return None


class SyncOrm(Worker):
    name = "Py.Ext.Django.SyncOrm"
    queue = "orm"
    max_attempts = 3

    def process(self, job: Job) -> None:
        from django.contrib.auth.models import User
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute("SELECT pg_sleep(0.02)")
        User.objects.filter(username="nobody").exists()


class AsyncOrm(Worker):
    name = "Py.Ext.Django.AsyncOrm"
    queue = "orm"
    max_attempts = 3

    async def process(self, job: Job) -> None:
        from django.contrib.auth.models import User

        await User.objects.filter(username="nobody").aexists()


#: (start, end) of each OrmBound job's ORM-thread work, to see whether they overlapped.
ORM_SPANS: list[tuple[float, float]] = []


class OrmBound(Worker):
    """An async job whose work is a blocking ORM-thread call, as ``aget`` and friends are."""

    name = "Py.Ext.Django.OrmBound"
    queue = "orm"

    async def process(self, job: Job) -> None:
        import time

        from asgiref.sync import sync_to_async

        def work() -> None:
            start = time.monotonic()
            time.sleep(0.2)
            ORM_SPANS.append((start, time.monotonic()))

        await sync_to_async(work)()


class PooledOrm(Worker):
    """ORM work on the ``pooled`` alias, whose Django pool is smaller than the thread count."""

    name = "Py.Ext.Django.PooledOrm"
    queue = "orm"
    max_attempts = 1

    def process(self, job: Job) -> None:
        from django.db import connections

        with connections["pooled"].cursor() as cur:
            cur.execute("SELECT pg_sleep(0.02)")


class CompletesInAtomic(Worker):
    """Writes through Django and completes its job in the same ``atomic()`` block; with
    ``fail`` the block raises after both, so neither may commit."""

    name = "Py.Ext.Django.CompletesInAtomic"
    queue = "orm"
    max_attempts = 1

    def process(self, job: Job) -> None:
        from django.db import connection, transaction
        from oban_py_ext.django import complete_in

        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("INSERT INTO django_effects (job_id) VALUES (%s)", [job.id])
            complete_in(job)
            if job.args.get("fail"):
                raise RuntimeError("the block failed after complete_in")
