"""A web dashboard for oban_py and Elixir Oban nodes sharing ``oban_jobs``.

``create_app(dsn=...)`` (or ``create_app(client=node)``) returns an ASGI application built on
Starlette and Jinja2: an overview (counts by queue and state, nodes from gossip check-ins, the
last hour's throughput and failures as SVG), the job list with filters and keyset pagination,
job and queue pages, and actions (retry, cancel, delete, pause, resume, scale). Mount it in
FastAPI or Starlette, put it in front of Django's ASGI app, or run ``oban-py web``.
Install with the ``web`` extra: ``pip install "oban-py[web]"``.
"""

from __future__ import annotations

from oban_py_ext.web.app import create_app
from oban_py_ext.web.dashboard import Dashboard
from oban_py_ext.web.security import Authorize

__all__ = ["Authorize", "Dashboard", "create_app"]
