"""The ``oban-py`` command line."""

from __future__ import annotations

from typing import Annotated

import typer

from oban_py import __version__
from oban_py.cli import jobs as cli_jobs
from oban_py.cli import migrations as schema_cli
from oban_py.cli import node as cli_node
from oban_py.cli import stats as cli_stats
from oban_py.cli import web as cli_web
from oban_py.versions import CURRENT_VERSION

app = typer.Typer(
    name="oban-py",
    help="Run and manage oban_py nodes and the Oban schema.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"oban-py {__version__} (Oban schema version {CURRENT_VERSION})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and the schema version it needs, and exit.",
        ),
    ] = None,
) -> None:
    """oban-py: PostgreSQL job processing compatible with Elixir Oban."""


schema_cli.register(app)
cli_node.register(app)
cli_jobs.register(app)
cli_stats.register(app)
cli_web.register(app)


@app.command()
def demo(
    dsn: str | None = typer.Option(
        None, "--dsn", help="PostgreSQL DSN (default: DATABASE_URL, else an embedded server)"
    ),
) -> None:
    """Run a node on a few demo jobs (success, retry, snooze, cancel, record) and exit."""
    from oban_py.cli.demo import main as run_demo

    raise typer.Exit(run_demo(dsn))


def main() -> None:
    app()
