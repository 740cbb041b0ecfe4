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
