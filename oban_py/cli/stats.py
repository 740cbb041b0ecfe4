"""``oban-py stats``: how many jobs each queue holds in each state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from oban_py.cli.common import with_client
from oban_py.cli.migrations import Dsn, Prefix

if TYPE_CHECKING:
    from oban_py.client.core import Client

Counts = dict[str, dict[str, int]]


async def count_jobs(client: Client) -> Counts:
    """``{queue: {state: count}}`` for every queue holding at least one job."""
    async with client.pool.connection() as conn:
        rows = await (await conn.execute(client.queries["stats_counts"])).fetchall()
    counts: Counts = {}
    for queue, state, count in rows:
        counts.setdefault(queue, {})[state] = count
    return counts


def stats(
    dsn: Dsn = None,
    prefix: Prefix = "public",
    as_json: Annotated[
        bool, typer.Option("--json", help="One object per queue: queue and a count per state.")
    ] = False,
) -> None:
    """Count the jobs of each queue in each state (every row is counted: a full scan)."""
    # The columns of the table, in a job's life order; states with no job anywhere are left out.
    from oban_py.job.unique import ALL_STATES as COLUMNS

    counts = with_client(dsn, prefix, count_jobs)
    if as_json:
        for queue, by_state in counts.items():
            row = {"queue": queue, **{s: by_state.get(s, 0) for s in COLUMNS}}
            typer.echo(orjson.dumps(row).decode())
        return
    if not counts:
        typer.echo(f"No jobs in prefix {prefix!r}.", err=True)
        return
    states = [s for s in COLUMNS if any(s in by_state for by_state in counts.values())]
    width = max(16, *(len(q) for q in counts))
    typer.echo(f"{'QUEUE':<{width}} " + " ".join(f"{s.upper():>10}" for s in states))
    totals = dict.fromkeys(states, 0)
    for queue, by_state in counts.items():
        for s in states:
            totals[s] += by_state.get(s, 0)
        typer.echo(f"{queue:<{width}} " + " ".join(f"{by_state.get(s, 0):>10}" for s in states))
    if len(counts) > 1:
        typer.echo(f"{'(all)':<{width}} " + " ".join(f"{totals[s]:>10}" for s in states))


def register(app: typer.Typer) -> None:
    """Add ``stats`` to ``app``."""
    app.command("stats")(stats)
