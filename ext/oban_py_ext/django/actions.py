"""Retry and cancel by id with the library's SQL, and the queue names, on Django's connection
(and transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.resources import files

from oban_py.notifier import channel
from oban_py.sql import Queries, compose
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


@cache
def _queue_names_sql(prefix: str) -> bytes:
    text = files("oban_py_ext.django").joinpath("queue_names.sql").read_text(encoding="utf-8")
    return compose(text, prefix)


def queue_names(using: str | None = None) -> list[str]:
    """Every queue some job is in, by a skip scan of the state/queue index (see the SQL)."""
    cur = raw_connection(using).execute(_queue_names_sql(conf.prefix()))
    return [str(row[0]) for row in cur.fetchall()]
