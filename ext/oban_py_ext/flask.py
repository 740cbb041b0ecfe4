"""Flask (and any WSGI app built with it): an insert-only client per app, a transaction per
request that a job joins, and ``flask oban ...``.

    oban = ObanFlask()

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["OBAN_DSN"] = os.environ["DATABASE_URL"]
        oban.init_app(app)
        return app

    @bp.post("/orders")
    def create_order():
        conn = oban.connection()          # the request's connection, in its transaction
        order = conn.execute("INSERT INTO orders ... RETURNING id").fetchone()
        Receipt.enqueue_sync({"order": order[0]}, conn)
        return {"order": order[0]}, 201

The request's transaction opens on the first ``oban.connection()`` and ends before the response
leaves: it commits when the view returned a response below 400, and rolls back when it raised,
called ``abort()`` or returned an error status, so a failed request never leaves a job behind.
The connection then goes back to the client's sync pool, whatever happened.

The client is the one registered under ``OBAN_NAME`` (default ``"Oban"``), looked up on each
request: a ``TestingClient`` a test creates takes over (until it is closed: then the app's own
client serves again), and its inline jobs run once the request's transaction has committed.
Without one, ``init_app`` creates a ``Client`` from ``OBAN_DSN`` (and ``OBAN_PREFIX``) whose
sync pool closes when the process exits. Queues run
elsewhere: ``flask oban start --queues default:10`` (the app's workers are importable, the DSN
is the app's) or ``oban-py start``.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import click
import psycopg
from flask import Flask, Response, current_app, g

from oban_py import Client, Job, get_instance
from oban_py.job.errors import InstanceNotFound

__all__ = ["ObanFlask"]

_KEY = "oban"


@dataclass
class _State:
    """What ``init_app`` keeps for one app (``app.extensions["oban"]``)."""

    name: str
    #: The client ``init_app`` created (and closes at exit), if it created one.
    owned: Client | None


class ObanFlask:
    """The Flask extension: ``ObanFlask(app)`` or ``ObanFlask()`` then ``init_app(app)``.

    Settings (``app.config``): ``OBAN_DSN`` (a client is created from it unless one is given
    or already registered), ``OBAN_PREFIX`` (default ``"public"``), ``OBAN_NAME`` (the
    instance name, default ``"Oban"``).
    """

    def __init__(self, app: Flask | None = None, *, client: Client | None = None) -> None:
        self._client = client
        if app is not None:
            self.init_app(app, client=client)

    def init_app(self, app: Flask, *, client: Client | None = None) -> None:
        client = client or self._client
        name = client.config.name if client is not None else app.config.get("OBAN_NAME", "Oban")
        owned = None
        if client is None and not _registered(name):
            dsn = app.config.get("OBAN_DSN")
            if not dsn:
                raise RuntimeError(
                    "ObanFlask needs app.config['OBAN_DSN'] (or a client=, or a Client"
                    f" registered as {name!r} before init_app)"
                )
            owned = Client(dsn=dsn, prefix=app.config.get("OBAN_PREFIX", "public"), name=name)
            atexit.register(owned.close_sync)
        app.extensions[_KEY] = _State(name, owned)
        # Flask runs after_request hooks in reverse order of registration, the app's after its
        # blueprints': first in the list, the commit runs after every other hook, so a hook
        # that fails the response (a 500) fails it before anything was committed.
        app.after_request_funcs.setdefault(None, []).insert(0, _commit)
        app.teardown_request(_release)
        app.cli.add_command(_cli(app))

    # -- in a request -----------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """The client of the current app (the one registered under its ``OBAN_NAME`` now)."""
        state: _State = current_app.extensions[_KEY]
        return get_instance(state.name)

    def connection(self) -> psycopg.Connection[Any]:
        """The request's connection, inside the request's transaction (opened on first use)."""
        conn: psycopg.Connection[Any] | None = g.get("_oban_conn")
        if conn is None:
            # Unwound in reverse by _close: the transaction ends, then the connection goes back.
            with ExitStack() as opening:
                conn = opening.enter_context(self.client.connection_sync())
                opening.enter_context(conn.transaction())
                g._oban_open = opening.pop_all()
            g._oban_conn = conn
        return conn

    def enqueue(self, job: Job) -> Job:
        """Insert ``job`` in the request's transaction."""
        return self.client.enqueue_sync(job, conn=self.connection())

    def enqueue_many(self, jobs: Iterable[Job]) -> list[Job]:
        """Insert ``jobs`` in the request's transaction."""
        return self.client.enqueue_many_sync(jobs, conn=self.connection())


def _registered(name: str) -> bool:
    try:
        get_instance(name)
    except InstanceNotFound:
        return False
    return True


def _close(error: BaseException | None) -> None:
    """End the request's transaction (commit unless ``error``) and give its connection back;
    a failed commit propagates, so the request fails instead of claiming success."""
    opened: ExitStack | None = g.pop("_oban_open", None)
    g.pop("_oban_conn", None)
    if opened is None:
        return
    # Commits (or rolls back), then gives the connection back to the pool, where a testing
    # client runs the inline jobs the commit released.
    if error is None:
        opened.close()
    else:
        opened.__exit__(type(error), error, error.__traceback__)


class _ErrorResponse(Exception):
    """Rolls back the transaction of a request answered with an error status."""


def _commit(response: Response) -> Response:
    # Before the response leaves: a commit that fails turns into a 500, not a false success.
    if response.status_code >= 400:
        _close(_ErrorResponse(response.status))
    else:
        _close(None)
    return response


def _release(error: BaseException | None) -> None:
    # Still open here only when the view raised (no after_request ran): roll back.
    _close(error or _ErrorResponse("request ended without a response"))


# -- flask oban ... ----------------------------------------------------------------------------


def _cli(app: Flask) -> click.Command:
    """``oban-py``'s commands as ``flask oban ...``, with the app's settings as defaults."""

    @click.command(
        "oban",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def oban(args: tuple[str, ...]) -> None:
        """Run and manage oban_py nodes and the Oban schema with this app's OBAN_DSN and
        OBAN_PREFIX (``flask oban --help`` lists the commands of ``oban-py``)."""
        _run_cli(app, list(args))

    return oban


def _run_cli(app: Flask, args: list[str]) -> None:
    # Typer carries its own click, so oban-py's commands are run, not mounted. The DSN
    # precedence: --dsn, then $OBAN_DSN, then the app's OBAN_DSN, then $DATABASE_URL.
    import os

    import typer.main

    from oban_py.cli import app as oban_cli

    command = typer.main.get_command(oban_cli)
    prefix = {"prefix": app.config.get("OBAN_PREFIX", "public")}
    dsn = app.config.get("OBAN_DSN")
    lent = bool(dsn) and "OBAN_DSN" not in os.environ
    if lent:
        os.environ["OBAN_DSN"] = str(dsn)
    try:
        # The app's workers are registered: importing the app imported their modules.
        with app.app_context():
            command.main(
                args=args,
                prog_name="flask oban",
                default_map=_defaults(command, prefix),
            )
    finally:
        if lent:
            del os.environ["OBAN_DSN"]


def _defaults(command: Any, given: dict[str, Any]) -> dict[str, Any]:
    """click's ``default_map`` giving every (sub)command that takes them these option values."""
    mapping: dict[str, Any] = {
        key: value for key, value in given.items() if any(p.name == key for p in command.params)
    }
    for name, sub in getattr(command, "commands", {}).items():
        mapping[name] = _defaults(sub, given)
    return mapping
