"""The ``oban-py`` command line."""

from __future__ import annotations

from typing import Annotated

import typer

from oban_py import __version__, cli_jobs, cli_node, cli_stats, cli_web, schema
from oban_py.schema import cli as schema_cli

app = typer.Typer(
    name="oban-py",
    help="Run and manage oban_py nodes and the Oban schema.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"oban-py {__version__} (Oban schema version {schema.CURRENT_VERSION})")
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
    from oban_py import demo as demo_module

    raise typer.Exit(demo_module.main(dsn))


def main() -> None:
    app()
