"""Job commands of ``oban-py``: enqueue, jobs (list and show), cancel, retry, delete."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from oban_py.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    fail,
    job_json,
    job_line,
    parse_json_object,
    with_client,
)
from oban_py.cli.migrations import Dsn, Prefix

if TYPE_CHECKING:
    from oban_py.client.core import Client
    from oban_py.job.model import Job
    from oban_py.worker import Worker

Json = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line).")]


def enqueue(
    worker: Annotated[str, typer.Argument(help="Worker name as stored, e.g. MyApp.Mailer.")],
    args: Annotated[str, typer.Option("--args", help="Job args as a JSON object.")] = "{}",
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Default: the worker's, else default.")
    ] = None,
    priority: Annotated[
        int | None,
        typer.Option("--priority", help="0 (highest) to 9. Default: the worker's, else 0."),
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option("--max-attempts", help="Default: the worker's, else 20.")
    ] = None,
    schedule_in: Annotated[
        float | None, typer.Option("--schedule-in", help="Seconds from now.")
    ] = None,
    tags: Annotated[str | None, typer.Option("--tags", help="Comma-separated tags.")] = None,
    meta: Annotated[str | None, typer.Option("--meta", help="Meta as a JSON object.")] = None,
    dsn: Dsn = None,
    prefix: Prefix = "public",
    as_json: Json = False,
) -> None:
    """Insert one job. A worker importable here (``module.Class``, from the working directory)
    lends its options (queue, priority, max_attempts, tags, meta, unique) and has its typed args
    checked before anything is inserted; any other name is inserted as given, for whichever
    node (Elixir or Python) serves the queue."""
    from pydantic import ValidationError

    from oban_py.job.errors import InvalidArgs
    from oban_py.job.model import Job

    given: dict[str, Any] = {
        "queue": queue,
        "priority": priority,
        "max_attempts": max_attempts,
        "schedule_in": schedule_in,
        "meta": parse_json_object(meta, "--meta"),
        "tags": None if tags is None else [t for t in tags.split(",") if t.strip()],
    }
    opts = {k: v for k, v in given.items() if v is not None}
    job_args = parse_json_object(args, "--args") or {}
    cls = _importable_worker(worker)
    try:
        job = (
            cls.new(job_args, **opts)
            if cls is not None
            else Job(worker=worker, args=job_args, **opts)
        )
    except InvalidArgs as error:
        raise fail(f"invalid args: {error}", EXIT_USAGE) from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise fail(f"invalid job: {problems}", EXIT_USAGE) from None
    inserted = with_client(dsn, prefix, lambda client: client.enqueue(job))
    if as_json:
        typer.echo(job_json(inserted))
    else:
        typer.echo(
            f"Enqueued job {inserted.id} ({inserted.worker}) in queue {inserted.queue!r}:"
            f" {inserted.state}"
            + (" (a duplicate of an existing unique job)" if inserted.conflict else "")
        )


def _importable_worker(name: str) -> type[Worker] | None:
    """The Python worker class stored as ``name``, if one can be imported from here."""
    from oban_py.job.errors import UnknownWorker
    from oban_py.worker import resolve

    # A console script's sys.path lacks the working directory, where the app's package lives.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return resolve(name)
    except UnknownWorker:
        return None


jobs_app = typer.Typer(
    help="List jobs, or show one: oban-py jobs [--state ...] | oban-py jobs show ID.",
    no_args_is_help=False,
)


@jobs_app.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    state: Annotated[
        list[str] | None, typer.Option("--state", "-s", help="Repeatable: a job state.")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", "-q")] = None,
    worker: Annotated[str | None, typer.Option("--worker", "-w")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    dsn: Dsn = None,
    prefix: Prefix = "public",
    as_json: Json = False,
) -> None:
    """List jobs, newest first, filtered by state, queue and worker."""
    if ctx.invoked_subcommand is not None:
        return
    from oban_py.job.unique import ALL_STATES

    unknown = [s for s in state or [] if s not in ALL_STATES]
    if unknown:
        raise fail(f"unknown state {unknown[0]!r}; states are {', '.join(ALL_STATES)}", EXIT_USAGE)
    params = {
        "states": state or None,
        "queue": queue,
        "worker": worker,
        "args": None,
        "meta": None,
        "tags": None,
        "priority": None,
        "limit": limit,
    }

    async def fetch(client: Client) -> tuple[list[Job], list[str]]:
        from psycopg.rows import dict_row

        from oban_py.job.model import Job

        async with client.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(client.queries["jobs_list"], params)
            jobs = [Job.from_row(row) for row in await cur.fetchall()]
            if jobs or not worker:
                return jobs, []
            # Workers are stored by their full dotted name; a short one finds nothing.
            await cur.execute(client.queries["workers_ending"], {"tail": worker})
            return jobs, [row["worker"] for row in await cur.fetchall()]

    found, near = with_client(dsn, prefix, fetch)
    if as_json:
        for job in found:
            typer.echo(job_line(job))
        return
    if not found:
        hint = ""
        if near:
            hint = f" Workers are matched by full name; did you mean {' or '.join(near)}?"
        typer.echo(f"No jobs match.{hint}", err=True)
        return
    typer.echo(f"{'ID':>8}  {'STATE':<10} {'QUEUE':<14} {'ATTEMPT':<8} {'SCHEDULED AT':<20} WORKER")
    for job in found:
        when = job.scheduled_at.strftime("%Y-%m-%d %H:%M:%S") if job.scheduled_at else "-"
        attempts = f"{job.attempt}/{job.max_attempts}"
        typer.echo(
            f"{job.id:>8}  {job.state:<10} {job.queue:<14} {attempts:<8} {when:<20} {job.worker}"
        )


@jobs_app.command("show")
def show(
    job_id: Annotated[int, typer.Argument(metavar="ID")],
    dsn: Dsn = None,
    prefix: Prefix = "public",
) -> None:
    """Print one job as JSON, its recorded value decoded (exit 6 when there is no such job)."""
    job = with_client(dsn, prefix, lambda client: client.get_job(job_id))
    if job is None:
        raise fail(f"no job with id {job_id}", EXIT_NOT_FOUND)
    typer.echo(job_json(job, extra=_decoded(job)))


def _decoded(job: Job) -> dict[str, Any]:
    """What the row holds encoded, decoded: the recorded value, as Python sees it
    (``get_job(...).recorded``), next to the Base64 term in ``meta.return``."""
    if job.meta.get("recorded") is not True:
        return {}
    try:
        return {"recorded": repr(job.recorded)}
    except Exception as error:
        return {"recorded": f"<unreadable: {error}>"}


def _each(
    ids: list[int],
    dsn: str | None,
    prefix: str,
    verb: str,
    act: Callable[[Client, int], Awaitable[bool]],
) -> None:
    """Apply ``act`` to each job, report what happened to each, exit 6 if any id is unknown."""

    async def run(client: Client) -> list[tuple[int, Job | None, bool]]:
        outcome = []
        for job_id in ids:
            before = await client.get_job(job_id)
            done = before is not None and await act(client, job_id)
            outcome.append((job_id, before, done))
        return outcome

    missing = []
    for job_id, before, done in with_client(dsn, prefix, run):
        if before is None:
            missing.append(job_id)
            typer.echo(f"error: no job with id {job_id}", err=True)
        elif done:
            typer.echo(f"{verb} job {job_id}")
        else:
            typer.echo(f"job {job_id} not {verb.lower()}: it is {before.state}", err=True)
    if missing:
        raise typer.Exit(EXIT_NOT_FOUND)


JobIds = Annotated[list[int], typer.Argument(metavar="ID...", help="Job ids.")]


def cancel(ids: JobIds, dsn: Dsn = None, prefix: Prefix = "public") -> None:
    """Cancel jobs not yet finished; executing ones are killed on whichever node runs them."""
    _each(ids, dsn, prefix, "Cancelled", lambda client, i: client.cancel_job(i))


def retry(ids: JobIds, dsn: Dsn = None, prefix: Prefix = "public") -> None:
    """Make jobs available again (not available or executing ones)."""
    _each(ids, dsn, prefix, "Retried", lambda client, i: client.retry_job(i))


def delete(ids: JobIds, dsn: Dsn = None, prefix: Prefix = "public") -> None:
    """Delete jobs that are not executing."""
    _each(ids, dsn, prefix, "Deleted", lambda client, i: client.delete_job(i))


def register(app: typer.Typer) -> None:
    """Add the job commands to ``app``."""
    app.command("enqueue")(enqueue)
    app.add_typer(jobs_app, name="jobs")
    app.command("cancel")(cancel)
    app.command("retry")(retry)
    app.command("delete")(delete)
