"""Workflow commands of ``oban-py``: ``workflows show ID`` (and ``workflows cancel ID``)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

import typer

from oban_py.cli.common import EXIT_NOT_FOUND, fail, with_client
from oban_py.cli.migrations import Dsn, Prefix

if TYPE_CHECKING:
    from oban_py.workflows import Status

workflows_app = typer.Typer(
    help="Inspect and cancel workflows (docs/workflows.md).", no_args_is_help=True
)

Json = Annotated[bool, typer.Option("--json", help="Print the status as one JSON object.")]


def render(status: Status) -> str:
    """The status as text: counts, then one line per job, held ones with what holds them."""
    counts = ", ".join(f"{state} {n}" for state, n in sorted(status.counts.items()))
    lines = [
        f"workflow {status.workflow_id}: {len(status.jobs)} jobs ({counts})"
        + (", finished" if status.finished else "")
    ]
    waiting = {held.id: held.waiting_for for held in status.held}
    for job in status.jobs:
        line = f"  {job['id']:>8}  {job['state']:<10} {job['name']}  {job['worker']}"
        if job["deps"]:
            line += f"  after {', '.join(job['deps'])}"
        if job["id"] in waiting:
            holds = ", ".join(f"{n} ({s or 'deleted'})" for n, s in waiting[job["id"]].items())
            line += f"  held by {holds}"
        lines.append(line)
    return "\n".join(lines)


@workflows_app.command("show")
def show(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    dsn: Dsn = None,
    prefix: Prefix = "public",
    as_json: Json = False,
) -> None:
    """Print a workflow's jobs, counts by state and what holds each held job (exit 6 when it
    has no jobs)."""
    from oban_py import workflows

    status = with_client(dsn, prefix, lambda c: workflows.status(workflow_id, oban=c))
    if not status.jobs:
        raise fail(f"no workflow with id {workflow_id}", EXIT_NOT_FOUND)
    if as_json:
        data = dataclasses.asdict(status) | {"finished": status.finished}
        import orjson

        from oban_py.job import jsonb

        typer.echo(jsonb.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(render(status))


@workflows_app.command("cancel")
def cancel(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    dsn: Dsn = None,
    prefix: Prefix = "public",
) -> None:
    """Cancel every unfinished job of a workflow (executing ones are killed on their node)."""
    from oban_py import workflows

    count = with_client(dsn, prefix, lambda c: workflows.cancel(workflow_id, oban=c))
    typer.echo(f"cancelled {count} jobs of workflow {workflow_id}")


def register(app: typer.Typer) -> None:
    """Add the workflow commands to ``app``."""
    app.add_typer(workflows_app, name="workflows")
