"""Retry and cancel by id with the library's SQL, on Django's connection (and transaction)."""

from __future__ import annotations

from collections.abc import Sequence

from oban_py.notifier import channel
from oban_py.queries import Queries
from oban_py_ext.django import conf, raw_connection


def retry_jobs(ids: Sequence[int], using: str | None = None) -> int:
    """Make jobs available again (not available or executing ones); returns how many."""
    cur = raw_connection(using).execute(Queries(conf.prefix())["job_retry"], {"ids": list(ids)})
    return len(cur.fetchall())


def cancel_jobs(ids: Sequence[int], using: str | None = None) -> int:
    """Cancel jobs not yet finished, signalling nodes to kill executing ones; returns how many."""
    params = {"ids": list(ids), "channel": channel(conf.prefix(), "signal")}
    cur = raw_connection(using).execute(Queries(conf.prefix())["job_cancel"], params)
    return len(cur.fetchall())
