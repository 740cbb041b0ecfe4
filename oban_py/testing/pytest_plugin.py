"""The pytest plugin of oban_py (loaded automatically once oban-py is installed).

Fixtures:

- ``oban_dsn``: the database the testing client inserts into. By default ``$OBAN_TEST_DSN``,
  else ``$DATABASE_URL``; tests using it are skipped when neither is set. Override it in your
  ``conftest.py`` to hand out a per-test database.
- ``oban_testing_mode``: ``"manual"`` unless a test is marked
  ``@pytest.mark.oban_testing("inline")`` (or ``"disabled"``); override the fixture to change
  the default for a directory.
- ``oban_testing``: a :class:`oban_py.testing.TestingClient` in that mode, registered as
  ``"Oban"`` so ``Worker.enqueue`` in the code under test uses it. After the test it deletes
  the jobs it inserted (``reset(scoped=True)``: other tests' rows on a shared database stay)
  and closes; first it waits for inline jobs held for a transaction of the test's own
  connections (``settle``), so an exception such a job raised fails the test. Inline and
  disabled modes get ``oban_dsn`` too when it is available (an inline job enqueued in a
  transaction runs after the commit), and run without it otherwise. It works in plain ``def``
  tests too (with the ``*_sync`` helpers); it needs pytest-asyncio.
- ``oban_testing_options``: the client's options (``oban_dsn``), resolved in a sync fixture so
  an ``oban_dsn`` override may use the Django ORM under pytest-django.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from oban_py.testing import MODES, TestingClient, reset


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "oban_testing(mode): run the oban_testing fixture in mode inline, manual or disabled",
    )


@pytest.fixture
def oban_dsn() -> str:
    """The DSN of the database manual-mode tests insert into (override to provide one)."""
    dsn = os.environ.get("OBAN_TEST_DSN") or os.environ.get("DATABASE_URL")
    if not dsn:
        pytest.skip("oban_testing needs a database: set OBAN_TEST_DSN or override oban_dsn")
    return dsn


@pytest.fixture
def oban_testing_mode(request: pytest.FixtureRequest) -> str:
    """The mode of ``oban_testing``: the ``oban_testing`` marker's, else ``"manual"``."""
    marker = request.node.get_closest_marker("oban_testing")
    mode = "manual"
    if marker is not None:
        mode = marker.kwargs.get("mode", marker.args[0] if marker.args else "manual")
    if mode not in MODES:
        raise pytest.UsageError(f"oban_testing mode must be one of {', '.join(MODES)}: {mode!r}")
    return str(mode)


@pytest.fixture
def oban_testing_options(oban_testing_mode: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """What ``oban_testing`` builds its client with, resolved in a sync fixture: an overridden
    ``oban_dsn`` may use the Django ORM (pytest-django's ``db``), which refuses to run inside
    the async fixture's event loop."""
    if oban_testing_mode == "manual":
        return {"dsn": request.getfixturevalue("oban_dsn")}
    # Inline and disabled modes run without a database when there is none (with one, an inline
    # job enqueued in a transaction runs after the commit).
    with contextlib.suppress(pytest.skip.Exception):
        return {"dsn": request.getfixturevalue("oban_dsn")}
    return {}


# The async fixture needs pytest-asyncio; without it the plugin still loads, minus the fixture.
if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def oban_testing(
        oban_testing_mode: str, oban_testing_options: dict[str, Any]
    ) -> AsyncIterator[TestingClient]:
        """A testing client in ``oban_testing_mode``, registered as ``"Oban"``."""
        client = TestingClient(oban_testing_mode, **oban_testing_options)  # type: ignore[arg-type]
        try:
            yield client
            if client.pending:
                await client.settle()
        finally:
            try:
                if client.enqueued:
                    await reset(client, scoped=True)
            finally:
                await client.close()
