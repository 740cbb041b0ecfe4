"""One way to get a database for every test.

The server is, in order: ``DATABASE_URL`` when set; a testcontainers PostgreSQL when a Docker
engine answers; else an embedded pgserver under ``.pgdata/test``. Every test that needs a database
gets its own, created for it and dropped after it, so no test depends on another or on order.
Databases with the schema installed are cloned from a per-run template, which is cheap. The drop
runs on a thread beside the next test: PostgreSQL 15 makes every DROP DATABASE wait for a
checkpoint, a tenth of a second or more that no test needs to wait for.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "compat_fixtures"
RUN_ID = uuid.uuid4().hex[:8]


def _docker_postgres() -> Iterator[str] | None:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return None
    from testcontainers.postgres import PostgresContainer

    def gen() -> Iterator[str]:
        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url()

    return gen()


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """An admin DSN for a server on which tests may create and drop databases."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    if (docker := _docker_postgres()) is not None:
        yield from docker
        return
    from oban_py import embedded

    yield embedded.start(ROOT / ".pgdata" / "test")


def dsn_for(server: str, dbname: str) -> str:
    return make_conninfo(server, dbname=dbname)


def _admin(server: str) -> psycopg.Connection:
    return psycopg.connect(server, autocommit=True)


def create_database(server: str, template: str | None = None) -> str:
    name = f"oban_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
    with _admin(server) as conn:
        conn.execute(stmt)
    return name


def drop_database(server: str, name: str) -> None:
    with _admin(server) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


class Dropper:
    """Drops databases, in the order given, on a thread of its own; ``close`` waits for the last
    one and raises what any drop raised, so a database that would not go is still reported."""

    def __init__(self, server: str) -> None:
        self._server = server
        self._names: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="drop-databases", daemon=True)
        self._thread.start()

    def drop(self, name: str) -> None:
        self._names.put(name)

    def _run(self) -> None:
        while (name := self._names.get()) is not None:
            try:
                drop_database(self._server, name)
            except Exception as error:
                self._errors.append(error)

    def close(self) -> None:
        self._names.put(None)
        self._thread.join()
        if self._errors:
            raise ExceptionGroup("some test databases could not be dropped", self._errors)


@pytest.fixture(scope="session")
def dropper(server_dsn: str) -> Iterator[Dropper]:
    dropper = Dropper(server_dsn)
    yield dropper
    dropper.close()


@pytest.fixture(scope="session")
def schema_template(server_dsn: str) -> Iterator[str]:
    """A database with the current schema in ``public``, cloned by ``dsn``."""
    from oban_py import schema

    name = create_database(server_dsn)
    with psycopg.connect(dsn_for(server_dsn, name), autocommit=True) as conn:
        conn.execute(schema.install_sql().encode())
    yield name
    drop_database(server_dsn, name)


@pytest.fixture
def empty_dsn(server_dsn: str, dropper: Dropper) -> Iterator[str]:
    """A fresh, empty database of this test's own."""
    name = create_database(server_dsn)
    yield dsn_for(server_dsn, name)
    dropper.drop(name)


@pytest.fixture
def dsn(server_dsn: str, schema_template: str, dropper: Dropper) -> Iterator[str]:
    """A fresh database of this test's own with the Oban schema (current version) installed."""
    name = create_database(server_dsn, template=schema_template)
    yield dsn_for(server_dsn, name)
    dropper.drop(name)


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """An autocommit async connection to ``dsn``."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
        yield c


def _django_major() -> int:
    try:
        import django
    except ImportError:
        return 0
    return int(django.VERSION[0])


#: Django 6 (Python 3.12+) has tests of its own, run in .venv312 by ``dev.py test``.
collect_ignore = [] if _django_major() >= 6 else ["ext/django6"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # ``dev.py test`` runs two pytest-xdist workers with ``--dist loadgroup``: the fault tests,
    # each of which runs several node processes against tight timings, go to one worker, one
    # after another, while the other worker runs the rest (and then shares what is left).
    faults = ROOT / "tests" / "faults"
    for item in items:
        if faults in item.path.parents:
            item.add_marker(pytest.mark.xdist_group("faults"))


def pytest_configure(config: pytest.Config) -> None:
    # pytest's shared /tmp/pytest-of-<user> keeps only the three newest runs, so a second run
    # on the same machine (a developer beside CI) deletes the temporary folders of a running
    # one, embedded servers' data included: each run gets a folder of its own. Readable by
    # all, since the embedded server runs as its own system user when tests run as root.
    if not config.option.basetemp:
        base = tempfile.mkdtemp(prefix="oban-py-tests-")
        os.chmod(base, 0o755)
        config.option.basetemp = base
