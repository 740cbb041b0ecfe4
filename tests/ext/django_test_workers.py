"""Workers the Django ``oban start`` test imports through ``OBAN["workers"]``."""

from __future__ import annotations

from oban_py import Job, Worker


class DjangoMailer(Worker):
    name = "Py.Ext.Django.Mailer"

    async def process(self, job: Job) -> None:
        return None
