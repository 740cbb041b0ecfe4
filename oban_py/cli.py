"""The ``oban-py`` command line."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="oban-py",
    help="Run and manage oban_py nodes and the Oban schema.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """oban-py: PostgreSQL job processing compatible with Elixir Oban."""


def main() -> None:
    app()
