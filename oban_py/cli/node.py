"""Node commands of ``oban-py``: start a node, see queues across nodes, pause/resume/scale them."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from oban_py.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_INSTALLED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    fail,
    preflight,
    require_dsn,
    with_client,
)
from oban_py.cli.migrations import Dsn, Prefix

if TYPE_CHECKING:
    from oban_py.config import Config
    from oban_py.flow.usage import Usage

# The runtime (psycopg, pydantic, structlog, the node) is imported by the functions that use
# it: ``oban-py --help`` and ``--version`` start without it.

#: Exit code of a node stopped by a second signal, before its running jobs finished.
EXIT_FORCED = EXIT_FAILED
#: Seconds a second signal gives the process to leave on its own before it is ended outright
#: (a job blocking the event loop, a stop that cannot be cancelled).
FORCE_WITHIN = 3.0
#: Seconds the interpreter gets at exit to end the threads it waits for (idle pool threads end
#: at once) before the process leaves without them.
EXIT_WAIT = 1.0
#: How long ``queues`` listens for check-ins: nodes gossip every second by default.
GOSSIP_WAIT = 1.5


def _log() -> Any:
    import structlog

    return structlog.get_logger("oban.cli")


def start(
    dsn: Dsn = None,
    queues: Annotated[
        str | None,
        typer.Option("--queues", help="Queues and limits, e.g. mailers:10,default:5."),
    ] = None,
    node: Annotated[str | None, typer.Option("--node", help="Node name (host.pid).")] = None,
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Schema holding the Oban tables.")
    ] = None,
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", "-i", help="Repeatable: a module defining workers to load."),
    ] = None,
    shutdown_grace: Annotated[
        float | None,
        typer.Option("--shutdown-grace", help="Seconds running jobs get to finish on stop."),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
    log_format: Annotated[
        str, typer.Option("--log-format", help="json (one object per line) or console.")
    ] = "console",
    loop: Annotated[
        str,
        typer.Option("--loop", help="Event loop: auto (uvloop when installed), uvloop, asyncio."),
    ] = "auto",
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A TOML file of settings, read instead of oban.toml and pyproject.toml.",
            dir_okay=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check settings, database, schema and worker imports, print the node's"
            " configuration and exit without running it.",
        ),
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            "--processes",
            min=1,
            help="Node processes to run, each with these queues and limits (one per core);"
            " a supervisor forwards SIGTERM/SIGINT to them and exits non-zero if one dies.",
        ),
    ] = 1,
    supervisor_pid: Annotated[int | None, typer.Option("--supervisor-pid", hidden=True)] = None,
) -> None:
    r"""Run a node until SIGTERM/SIGINT: the first signal stops it gracefully within the
    shutdown grace, a second one stops it at once (exit 1, unfinished jobs left to the lifeline).

    Settings: arguments, then OBAN_* variables, then oban.toml, then \[tool.oban] in
    pyproject.toml.
    """
    if supervisor_pid is not None:
        from oban_py.cli.processes import watch_supervisor

        watch_supervisor(supervisor_pid)
    if loop not in ("auto", "uvloop", "asyncio"):
        raise fail(f"--loop must be auto, uvloop or asyncio, got {loop!r}", EXIT_USAGE)
    if log_format not in ("json", "console"):
        raise fail(f"--log-format must be json or console, got {log_format!r}", EXIT_USAGE)
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise fail(f"--log-level must be debug, info, warning or error, got {log_level!r}", 2)
    from oban_py import log
    from oban_py.settings import SettingsError, load_config, parse_queues, unknown_variables

    log.configure(log_level, "json" if log_format == "json" else "console")
    arguments: dict[str, Any] = {
        "dsn": dsn,
        "node": node,
        "prefix": prefix,
        "shutdown_grace": shutdown_grace,
    }
    try:
        if queues is not None:
            arguments["queues"] = parse_queues(queues)
        config = load_config(arguments, config_file=config_file)
    except SettingsError as error:
        raise fail(str(error), EXIT_USAGE) from None
    for variable, meant in unknown_variables():
        guess = f"; did you mean {meant}?" if meant else ""
        _log().warning(f"{variable} is not a setting and is ignored{guess}", variable=variable)
    require_dsn(config.dsn)
    if processes > 1 and not dry_run:
        from oban_py.cli.processes import Supervisor, node_names

        passed: list[str] = ["--log-level", log_level, "--log-format", log_format, "--loop", loop]
        for option, value in (("--queues", queues), ("--prefix", prefix)):
            if value is not None:
                passed += [option, value]
        if shutdown_grace is not None:
            passed += ["--shutdown-grace", repr(shutdown_grace)]
        if config_file is not None:
            passed += ["--config", str(config_file.resolve())]
        for module in imports or []:
            passed += ["--import", module]
        named = config.node if "node" in config.model_fields_set else None
        raise typer.Exit(Supervisor(passed, node_names(named, processes), dsn).run())
    _import_workers(imports or [])
    if dry_run:
        raise typer.Exit(_dry_run(config))
    log.attach_default_logger(served_events())
    raise typer.Exit(_run(config, new_loop(loop), supervised=supervisor_pid is not None))


def served_events() -> tuple[str, ...]:
    """What a served node logs: the default logger's events but the node's start and stop,
    which ``_run`` logs itself with the queues, prefix and event loop (else each is twice)."""
    from oban_py import log

    return tuple(event for event in log.DEFAULT_EVENTS if event != "oban.node.*")


def _dry_run(config: Config) -> int:
    from oban_py.schema._dsn import mask_password
    from oban_py.worker import registered

    assert config.dsn is not None
    asyncio.run(preflight(config.dsn, config.prefix))
    shown = config.model_dump(mode="json")
    shown["dsn"] = mask_password(config.dsn)
    # A queue shows the cluster-wide limits it has, not the ones it has not.
    shown["queues"] = {
        name: spec.model_dump(mode="json", exclude_none=True)
        for name, spec in config.queues.items()
    }
    if config.notifier_dsn:
        shown["notifier_dsn"] = mask_password(config.notifier_dsn)
    typer.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    workers = ", ".join(sorted(registered())) or "none"
    typer.echo(
        f"dry run: settings valid, database reachable, schema current; workers: {workers}."
        f" Node {config.node} would run {_queue_list(config)}.",
        err=True,
    )
    return 0


def _queue_list(config: Config) -> str:
    if not config.queues:
        return "no queues"
    return ", ".join(f"{name}:{spec.limit}" for name, spec in config.queues.items())


def new_loop(choice: str) -> asyncio.AbstractEventLoop:
    """uvloop unless asyncio was asked for or uvloop is missing (it has no Windows build)."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise fail("--loop uvloop: uvloop is not installed", EXIT_USAGE) from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _leave(code: int) -> None:
    """End the process now, after flushing the logs: no thread is waited for."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _Signals:
    """SIGTERM and SIGINT from the node's start to the process's exit.

    Python-level handlers rather than the loop's: they run in the main thread whatever it is
    doing (a job blocking the loop, the interpreter waiting for threads at exit), and hand each
    signal to the loop. From the second on the process leaves within ``FORCE_WITHIN`` seconds,
    by the loop's forced stop or, failing that, outright. Installed once the node has started:
    until then a signal does what it does to any process (SIGTERM ends it).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, ignore_after: bool = False) -> None:
        self.loop = loop
        # A node of ``start --processes`` that has stopped ignores what its supervisor forwards
        # next (a second Ctrl-C meant for the nodes still stopping): it is leaving anyway, and
        # would otherwise die of the signal instead of exiting with its own code.
        self.ignore_after = ignore_after
        self.received = 0
        self.handler: Callable[[signal.Signals], None] | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def install(self, handler: Callable[[signal.Signals], None]) -> None:
        self.handler = handler
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.received += 1
        if self.received == 2:
            threading.Thread(target=self._force, name="oban-force-exit", daemon=True).start()
        if self.handler is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                self.loop.call_soon_threadsafe(self.handler, signal.Signals(signum))

    @staticmethod
    def _force() -> None:
        time.sleep(FORCE_WITHIN)
        _log().warning("the process did not leave after a second signal: ending it now")
        _leave(EXIT_FORCED)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if self.ignore_after else previous)
        self._previous.clear()


_signals: _Signals | None = None


def _waited_for() -> list[str]:
    """The threads the interpreter waits for at exit (no daemons), this one aside."""
    current = threading.current_thread()
    return sorted(
        t.name
        for t in threading.enumerate()
        if t is not current and t is not threading.main_thread() and not t.daemon and t.is_alive()
    )


def _exit_guard(code: int, joined: threading.Event) -> None:
    # Idle pool threads end as soon as the interpreter tells them to; what still runs after
    # EXIT_WAIT was started by a job and may never end.
    if joined.wait(EXIT_WAIT):
        return
    _log().warning("exiting without waiting for threads jobs left running", threads=_waited_for())
    _leave(code)


def _run(config: Config, loop: asyncio.AbstractEventLoop, *, supervised: bool = False) -> int:
    """Serve until stopped, then leave even if a worker refuses to end.

    ``asyncio.run`` would wait for ever on a task that swallows its cancellation, and the
    interpreter joins the worker threads, and any thread a job started and left running, at
    exit. Once ``stop()`` has returned, every job is either acked or left ``executing`` for the
    lifeline to rescue, so nothing is lost by leaving such threads behind.
    """
    global _signals
    asyncio.set_event_loop(loop)
    _signals = _Signals(loop, ignore_after=supervised)
    try:
        code = loop.run_until_complete(_serve(config))
    except BaseException:
        loop.close()
        _signals.restore()
        raise
    # Give what is left (client tasks, workers being cancelled) the same chance asyncio.run
    # gives it, but bounded: a task that swallows its cancellation stays behind.
    leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in leftover:
        task.cancel()
    if leftover:
        loop.run_until_complete(asyncio.wait(leftover, timeout=1.0))
    lingering = [t for t in leftover if not t.done()]
    from oban_py.node import threads as worker_threads

    # Only threads running a job count: idle pool threads end with the interpreter.
    busy = worker_threads.busy()
    if lingering or busy:
        _log().warning(
            "exiting with workers that ignored cancellation; their jobs stay executing "
            "until the lifeline rescues them",
            tasks=len(lingering),
            threads=busy,
        )
        _leave(code)
    loop.close()
    if _waited_for():
        # The interpreter joins every thread that is no daemon before it exits, a thread a job
        # started and left running too: the guard ends the process should that take too long.
        # atexit functions run once they are joined, and are then left all the time they take.
        joined = threading.Event()
        atexit.register(joined.set)
        threading.Thread(
            target=_exit_guard, args=(code, joined), name="oban-exit", daemon=True
        ).start()
    _signals.restore()
    return code


def _import_workers(modules: list[str]) -> None:
    # A console script's sys.path lacks the working directory, where the app's package lives.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:
            raise fail(f"cannot import worker module {name!r}: {error!r}", EXIT_USAGE) from None


async def _serve(config: Config) -> int:
    from oban_py.job.errors import DatabaseUnavailable, SchemaError
    from oban_py.node.instance import Oban

    assert config.dsn is not None
    await preflight(config.dsn, config.prefix)
    oban = Oban(config=config)
    try:
        await oban.start()
    except SchemaError as error:
        await oban.close()
        raise fail(str(error), EXIT_NOT_INSTALLED) from None
    except DatabaseUnavailable as error:
        await oban.close()
        raise fail(str(error), EXIT_UNREACHABLE) from None
    _log().info(
        "node started",
        node=config.node,
        queues={q: spec.limit for q, spec in config.queues.items()},
        prefix=config.prefix,
        loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
    )
    graceful, forced = asyncio.Event(), asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        if not graceful.is_set():
            _log().info("stopping gracefully", signal=signum.name, grace=config.shutdown_grace)
            graceful.set()
        else:
            _log().warning("second signal: stopping now", signal=signum.name)
            forced.set()

    if _signals is not None:
        _signals.install(on_signal)
    await graceful.wait()
    stopping = asyncio.create_task(oban.stop())
    forcing = asyncio.create_task(forced.wait())
    done, _ = await asyncio.wait({stopping, forcing}, return_when=asyncio.FIRST_COMPLETED)
    forcing.cancel()
    if stopping in done:
        stopping.result()
        _log().info("node stopped", node=config.node)
        return 0
    stopping.cancel()
    with contextlib.suppress(BaseException):
        await stopping
    return EXIT_FORCED


# -- queues across nodes ---------------------------------------------------------------------


def queues(
    dsn: Dsn = None,
    prefix: Prefix = "public",
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to listen for check-ins.", min=0.1)
    ] = GOSSIP_WAIT,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the check-ins as JSON (a limited queue's with flow_usage)."
        ),
    ] = False,
) -> None:
    """Limit, running jobs and paused state of each queue on each node, from the check-ins
    nodes publish on the gossip channel (Python nodes with gossip on, and Elixir nodes with
    Oban Web's metrics) heard within --wait seconds; then, for queues with a global or rate
    limit, what the cluster uses of it now, per partition (docs/flow-control.md)."""
    checked = require_dsn(dsn)
    checks = asyncio.run(_listen_gossip(checked, prefix, wait))
    usages = _flow_usages(checked, prefix, checks)
    if as_json:
        for check in checks:
            found = usages.get(str(check.get("queue")))
            if found is not None:
                check = {**check, "flow_usage": [each.as_dict() for each in found]}
            typer.echo(orjson.dumps(check).decode())
        return
    if not checks:
        typer.echo(
            f"No check-ins heard in {wait:g} s in prefix {prefix!r}: no node with gossip"
            " enabled runs queues there, or a node's event loop is blocked (a worker doing"
            " blocking work in async def process); try a longer --wait.",
            err=True,
        )
        return
    typer.echo(f"{'NODE':<32} {'QUEUE':<16} {'LIMIT':>5} {'RUNNING':>7}  PAUSED")
    for check in checks:
        running = check.get("running") or []
        typer.echo(
            f"{check.get('node', '?')!s:<32} {check.get('queue', '?')!s:<16}"
            f" {check.get('limit', '?')!s:>5} {len(running):>7}  {bool(check.get('paused'))}"
        )
    if usages:
        typer.echo(f"\n{'QUEUE':<16} {'CLUSTER LIMIT':<16} {'PARTITION':<32} {'USED':>7} ALLOWED")
        for queue, found in usages.items():
            for each in found:
                limit = each.limit if each.period is None else f"rate per {each.period:g} s"
                for partition, used in each.partitions.items():
                    typer.echo(
                        f"{queue:<16} {limit:<16} {partition or '(whole queue)':<32}"
                        f" {used:>7} {each.allowed}"
                    )


def _flow_usages(dsn: str, prefix: str, checks: list[dict[str, Any]]) -> dict[str, list[Usage]]:
    """queue -> its ``Usage`` list, for the queues whose check-ins tell cluster-wide limits,
    read as their nodes count them (the first check-in of a queue that tells them)."""
    from oban_py.flow import Flow

    told: dict[str, Any] = {}
    for check in checks:
        found = Flow.from_check(check)
        if found is not None:
            told.setdefault(str(check.get("queue")), found)
    if not told:
        return {}

    async def read(client: Any) -> dict[str, list[Usage]]:
        from oban_py.flow import usage

        async with client.pool.connection() as conn:
            return {
                queue: await usage.read(conn, client.queries, queue, flow, ttl=ttl)
                for queue, (flow, ttl) in sorted(told.items())
            }

    return with_client(dsn, prefix, read)


async def _listen_gossip(dsn: str, prefix: str, wait: float) -> list[dict[str, Any]]:
    from oban_py.config import Config
    from oban_py.notifier import Notifier

    await preflight(dsn, prefix)
    latest: dict[tuple[str, str], dict[str, Any]] = {}

    def heard(payload: dict[str, Any]) -> None:
        for check in payload.get("checks") or []:
            if isinstance(check, dict):
                latest[(str(check.get("node")), str(check.get("queue")))] = check

    notifier = Notifier(Config(dsn=dsn, prefix=prefix, node="oban-py-cli"), dsn)
    notifier.listen("gossip", heard)
    await notifier.start()
    try:
        with contextlib.suppress(TimeoutError):
            await notifier.wait_listening()
        await asyncio.sleep(wait)
    finally:
        await notifier.stop()
    return [latest[key] for key in sorted(latest)]


def flow(
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    period: Annotated[
        float, typer.Option("--period", help="The rate limit's window, in seconds.", min=0.001)
    ] = 60.0,
    ttl: Annotated[
        float,
        typer.Option("--ttl", help="Heartbeat ttl: older producers hold no capacity.", min=0.1),
    ] = 30.0,
    dsn: Dsn = None,
    prefix: Prefix = "public",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """What a queue uses of its cluster-wide limits now (docs/flow-control.md): its jobs
    executing under live Python producers (what a global limit counts) and its starts within
    the last --period seconds (what a rate limit counts)."""

    async def read(client: Any) -> tuple[int, int]:
        from oban_py.flow import usage

        async with client.pool.connection() as conn:
            whole, window = await usage.read(
                conn, client.queries, queue, None, ttl=ttl, period=period
            )
        return whole.used, window.used

    executing, started = with_client(dsn, prefix, read)
    if as_json:
        figures = {"queue": queue, "executing": executing, "started": started, "period": period}
        typer.echo(orjson.dumps(figures).decode())
        return
    typer.echo(
        f"{queue}: {executing} executing under live Python nodes; {started} started in the"
        f" last {period:g} s"
    )


# -- signals ---------------------------------------------------------------------------------

Node = Annotated[str | None, typer.Option("--node", help="Only this node (default: every node).")]


Persist = Annotated[
    bool,
    typer.Option(
        "--persist",
        help="Also store the setting for the cluster: nodes started later (or restarted) run the"
        " queue so (needs `oban-py migrate`'s oban_py_queues table).",
    ),
]


def _signal(
    dsn: str | None,
    prefix: str,
    send: str,
    queue: str,
    persist: dict[str, Any] | None = None,
    **options: Any,
) -> None:
    from oban_py.client.core import Client
    from oban_py.config import Config

    checked = require_dsn(dsn)
    asyncio.run(preflight(checked, prefix))
    # A client, not a node: sending a signal needs nothing a node runs.
    client = Client(config=Config(dsn=checked, prefix=prefix, pool_size=1))
    try:
        if persist is not None:
            if queue == "*":
                raise fail("--persist stores one queue's settings; name the queue", EXIT_USAGE)
            client.persist_queue_sync(queue, **persist)
        getattr(client, f"{send}_sync")(queue, **options)
    finally:
        client.close_sync()


def pause(
    queue: Annotated[str, typer.Argument(help="Queue name, or '*' for all.")],
    node: Node = None,
    dsn: Dsn = None,
    prefix: Prefix = "public",
    persist: Persist = False,
) -> None:
    """Pause a queue on every node (Elixir and Python), or on --node."""
    _signal(dsn, prefix, "pause_queue", queue, {"paused": True} if persist else None, node=node)
    typer.echo(f"Sent pause for queue {queue!r} to {node or 'every node'}.")


def resume(
    queue: Annotated[str, typer.Argument(help="Queue name, or '*' for all.")],
    node: Node = None,
    dsn: Dsn = None,
    prefix: Prefix = "public",
    persist: Persist = False,
) -> None:
    """Resume a queue on every node, or on --node."""
    _signal(dsn, prefix, "resume_queue", queue, {"paused": False} if persist else None, node=node)
    typer.echo(f"Sent resume for queue {queue!r} to {node or 'every node'}.")


def scale(
    queue: Annotated[str, typer.Argument(help="Queue name.")],
    limit: Annotated[int, typer.Option("--limit", help="New concurrency limit.", min=1)],
    node: Node = None,
    dsn: Dsn = None,
    prefix: Prefix = "public",
    persist: Persist = False,
) -> None:
    """Change a queue's concurrency limit on every node, or on --node."""
    _signal(
        dsn,
        prefix,
        "scale_queue",
        queue,
        {"limit": limit} if persist else None,
        limit=limit,
        node=node,
    )
    typer.echo(f"Sent scale to {limit} for queue {queue!r} to {node or 'every node'}.")


def register(app: typer.Typer) -> None:
    """Add the node commands to ``app``."""
    app.command("start")(start)
    app.command("queues")(queues)
    app.command("flow")(flow)
    app.command("pause")(pause)
    app.command("resume")(resume)
    app.command("scale")(scale)
