"""``oban-py web``: the dashboard (``oban_py_ext.web``) on the bundled ASGI server, uvicorn.

It binds to 127.0.0.1 unless told otherwise, and refuses any other address unless a token or
Basic credentials protect it: a dashboard can cancel and delete jobs.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from oban_py.cli.common import EXIT_USAGE, fail, preflight, require_dsn
from oban_py.cli.migrations import Dsn, Prefix

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def web(
    dsn: Dsn = None,
    prefix: Prefix = "public",
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=0)] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", envvar="OBAN_WEB_TOKEN", help="Require this token (login page or Bearer)."
        ),
    ] = None,
    basic: Annotated[
        str | None,
        typer.Option(
            "--basic", envvar="OBAN_WEB_BASIC", help="Require HTTP Basic auth, as user:password."
        ),
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show everything, allow no action.")
    ] = False,
    name: Annotated[
        str, typer.Option("--name", help="Oban instance name used in signals.")
    ] = "Oban",
    refresh: Annotated[
        float, typer.Option("--refresh", help="Seconds between live refreshes.", min=1.0)
    ] = 5.0,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="A Host name to answer besides the loopback ones (repeatable; *.example.com).",
        ),
    ] = None,
    behind_proxy: Annotated[
        bool,
        typer.Option(
            "--behind-proxy",
            help="Trust X-Forwarded-Proto from a proxy in front (Secure cookies on https).",
        ),
    ] = False,
    count_cap: Annotated[
        int | None,
        typer.Option(
            "--count-cap",
            help="Most rows of one state the counts read per refresh; above it they are"
            " estimates, marked ≈ (default 10,000).",
            min=1,
        ),
    ] = None,
) -> None:
    """Serve the web dashboard: queues, nodes, jobs and the last hour, with actions."""
    checked = require_dsn(dsn)
    credentials: tuple[str, str] | None = None
    if basic is not None:
        user, sep, password = basic.partition(":")
        if not sep or not user or not password:
            raise fail("--basic must be user:password", EXIT_USAGE)
        credentials = (user, password)
    if token is not None and len(token) < 8:
        raise fail("--token must be at least 8 characters", EXIT_USAGE)
    if host not in LOOPBACK and token is None and credentials is None:
        raise fail(
            f"refusing to serve on {host} without --token or --basic: anyone who reaches it"
            " could cancel and delete jobs",
            EXIT_USAGE,
        )
    try:
        import uvicorn
        from oban_py_ext.web import create_app
        from oban_py_ext.web.reads import COUNT_CAP
    except ImportError as error:
        raise fail(
            f'the dashboard needs the web extra: pip install "oban-py[web]" ({error})', EXIT_USAGE
        ) from None
    asyncio.run(preflight(checked, prefix))
    app = create_app(
        dsn=checked,
        prefix=prefix,
        name=name,
        read_only=read_only,
        token=token,
        basic=credentials,
        refresh_interval=refresh,
        allowed_hosts=_hosts(allow_host, protected=token is not None or credentials is not None),
        trust_forwarded=behind_proxy,
        count_cap=COUNT_CAP if count_cap is None else count_cap,
    )
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"oban_py dashboard on http://{shown}:{port}/ (Ctrl-C to stop)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="on")


def register(app: typer.Typer) -> None:
    app.command("web")(web)


def _hosts(extra: list[str] | None, *, protected: bool) -> list[str] | None:
    """The Host names to answer: the default of ``create_app`` unless some were given, which
    then come on top of the loopback names (a dashboard without a login answers no others)."""
    if not extra:
        return None
    from oban_py_ext.web.app import LOOPBACK_HOSTS

    return list(extra) if protected else [*extra, *LOOPBACK_HOSTS]
