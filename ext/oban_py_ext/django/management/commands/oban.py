"""``manage.py oban start`` runs a node with the ``OBAN`` settings; every other ``oban-py``
command (``migrate``, ``install``, ``version``, ``queues``, ``pause``, ``resume``, ``scale``,
``enqueue``, ``jobs``, ``cancel``, ``retry``, ``delete``, ``uninstall``) runs as ``oban-py``
runs it, on the Django database and ``OBAN["prefix"]``.

``start`` imports each installed app's ``workers`` module and the ``OBAN["workers"]`` modules,
then serves exactly as ``oban-py start`` does (same signals, shutdown grace, exit codes, event
loop), logging job events through Django's ``LOGGING``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
from typing import Any, TextIO, cast

import typer
import typer.main
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import autodiscover_modules
from pydantic import ValidationError

from oban_py.cli.common import EXIT_NOT_INSTALLED, EXIT_UNREACHABLE, EXIT_USAGE
from oban_py_ext.django import conf

#: ``manage.py oban <name>`` → the ``oban-py`` command it runs.
ALIASES = {"version": "schema-version"}
#: Commands that make no sense from a Django project (``start`` is Django's own).
EXCLUDED = ("start", "demo")


def _cli_commands() -> dict[str, Any]:
    from oban_py.cli import app

    commands: dict[str, Any] = getattr(typer.main.get_command(app), "commands", {})
    return {name: cmd for name, cmd in commands.items() if name not in EXCLUDED}


class Command(BaseCommand):
    help = (
        "Run an Oban node with the OBAN settings (start), or any oban-py command on the Django"
        " database: migrate, version, queues, pause, resume, scale, enqueue, jobs, cancel,"
        " retry, delete. `manage.py oban <command> --help` describes each."
    )
    # `start` runs the checks itself, including the database ones.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="command")
        start = sub.add_parser(
            "start",
            help="run a node until SIGTERM/SIGINT (a second signal stops it at once)",
            description="Run a node with the OBAN settings until SIGTERM or SIGINT: the first"
            " signal lets running jobs finish for the shutdown grace, cancels the async ones"
            " still running and waits for the sync ones (a thread cannot be stopped); a second"
            " one stops at once (exit 1, jobs left to the lifeline).",
        )
        start.add_argument(
            "--queues",
            metavar="SPEC",
            help="run only these queues, e.g. mailers:10,default:5 (replaces OBAN['queues'])",
        )
        start.add_argument(
            "--queue",
            action="append",
            default=[],
            metavar="NAME:LIMIT",
            help="repeatable: add a queue, or change one's limit, on top of the others",
        )
        start.add_argument("--node", help="node name (default host.pid)")
        start.add_argument(
            "--shutdown-grace", type=float, help="seconds running jobs get to finish on stop"
        )
        start.add_argument(
            "--log-level",
            default="info",
            choices=("debug", "info", "warning", "error", "critical"),
            help="level of the oban loggers when LOGGING does not configure them",
        )
        start.add_argument(
            "--log-format",
            default="logging",
            choices=("logging", "json", "console"),
            help="logging: through Django's LOGGING (default); json or console: as oban-py"
            " start prints them, on stderr",
        )
        start.add_argument(
            "--loop",
            default="auto",
            choices=("auto", "uvloop", "asyncio"),
            help="event loop: auto (uvloop when installed), uvloop or asyncio",
        )
        # For tests and smoke checks: stop as SIGTERM would after this many seconds.
        start.add_argument("--run-for", type=float, default=None, help=argparse.SUPPRESS)
        for name, cmd in sorted(_cli_commands().items()):
            alias = next((a for a, n in ALIASES.items() if n == name), name)
            help_text = (cmd.help or "").strip().splitlines()[0] if cmd.help else None
            passthrough = sub.add_parser(alias, help=help_text, add_help=False)
            passthrough.add_argument("rest", nargs=argparse.REMAINDER)

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parse_args = parser.parse_args

        def parse(args: Any = None, namespace: Any = None) -> Any:
            # argparse cannot hand `pause --help` (an option first) to a REMAINDER argument:
            # every command but start gets its arguments as typed, for oban-py's own parser.
            given = list(args) if args is not None else []
            name = given[0] if given else ""
            if name != "start" and ALIASES.get(name, name) in _cli_commands():
                parsed = parse_args([name], namespace)
                parsed.rest = given[1:]
                return parsed
            return parse_args(args, namespace)

        parser.parse_args = parse  # type: ignore[method-assign]
        return parser

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "start":
            self._start(options)
        elif action == "version" and not options["rest"]:
            self._version()
        else:
            self._passthrough(ALIASES.get(action, action), options["rest"])

    def _version(self) -> None:
        """The schema version on Django's connection; when a node could not run on it, the
        problem and the fix as a Django project runs it (not ``oban-py migrate --dsn ...``)."""
        from oban_py_ext.django.schema import FIX, schema_state

        state = schema_state()
        self.stdout.write(str(state.version))
        if state.problem is not None:
            raise CommandError(f"{state.problem}. {FIX}", returncode=EXIT_NOT_INSTALLED)

    # -- every command but start -----------------------------------------------------------

    def _passthrough(self, name: str, rest: list[str]) -> None:
        from oban_py.cli import app

        argv = [name, *rest]
        params = {p.name for p in _cli_commands()[name].params}
        given = {arg.split("=", 1)[0] for arg in rest}
        if "--help" not in rest:
            if "dsn" in params and "--dsn" not in given:
                try:
                    argv += ["--dsn", conf.dsn()]
                except ImproperlyConfigured as error:
                    raise CommandError(str(error), returncode=EXIT_USAGE) from None
            if "prefix" in params and "--prefix" not in given:
                argv += ["--prefix", conf.prefix()]
        # oban-py prints to sys.stdout/stderr; call_command(stdout=...) must capture it.
        out, err = cast(TextIO, self.stdout._out), cast(TextIO, self.stderr._out)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = app(args=argv, prog_name="manage.py oban", standalone_mode=False)
            except typer.TyperException as error:
                error.show()  # type: ignore[attr-defined]
                code = getattr(error, "exit_code", 1)
            except typer.Abort:
                code = 1
        if isinstance(code, int) and code:
            raise SystemExit(code)

    # -- start -----------------------------------------------------------------------------

    def _start(self, options: dict[str, Any]) -> None:
        from oban_py import log
        from oban_py.cli import node as cli_node
        from oban_py.settings import SettingsError, parse_queues

        try:
            alias = conf.database()
        except ImproperlyConfigured as error:
            raise CommandError(str(error), returncode=EXIT_USAGE) from None
        self.check(databases=[alias])
        overrides: dict[str, Any] = {}
        try:
            queues: dict[str, Any] = (
                parse_queues(options["queues"])
                if options["queues"] is not None
                else dict(conf.options().get("queues", {}))
            )
            for spec in options["queue"]:
                queues.update(parse_queues(spec))
        except SettingsError as error:
            raise CommandError(str(error), returncode=EXIT_USAGE) from None
        overrides["queues"] = queues
        for key in ("node", "shutdown_grace"):
            if options[key] is not None:
                overrides[key] = options[key]
        try:
            config = conf.config(**overrides)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
            )
            raise CommandError(
                f"invalid node settings: {problems}", returncode=EXIT_USAGE
            ) from None
        self._require_schema()
        self._configure_logging(options["log_level"], options["log_format"])
        self._import_workers()
        log.attach_default_logger(cli_node.served_events())
        try:
            loop = cli_node.new_loop(options["loop"])
        except typer.Exit as error:
            raise SystemExit(error.exit_code) from None
        if options["run_for"] is not None:
            loop.call_later(options["run_for"], _stop_like_sigterm, loop)
        try:
            code = cli_node._run(config, loop)
        except typer.Exit as error:
            code = error.exit_code
        if code:
            raise SystemExit(code)

    def _require_schema(self) -> None:
        from django.db import OperationalError, connections

        from oban_py_ext.django.schema import FIX, schema_state

        try:
            problem = schema_state().problem
        except OperationalError as error:
            where = conf.database()
            detail = " ".join(str(error).split())
            raise CommandError(
                f"cannot reach the database {where!r}: {detail}", returncode=EXIT_UNREACHABLE
            ) from None
        finally:
            # The node has its own pool: this thread's connection would idle for the node's life.
            connections.close_all()
        if problem is not None:
            raise CommandError(f"{problem}. {FIX}", returncode=EXIT_NOT_INSTALLED)

    def _configure_logging(self, level: str, fmt: str) -> None:
        from oban_py import log
        from oban_py_ext.django import logs

        if fmt == "logging":
            logs.route_structlog_to_logging()
            logs.ensure_visible(level)
        else:
            log.configure(level, "json" if fmt == "json" else "console")

    def _import_workers(self) -> None:
        autodiscover_modules("workers")
        for module in conf.options().get("workers", []):
            try:
                importlib.import_module(module)
            except ImportError as error:
                raise CommandError(
                    f"cannot import worker module {module!r}: {error}", returncode=EXIT_USAGE
                ) from None


def _stop_like_sigterm(loop: Any) -> None:
    # Until the node has installed its handler, SIGTERM would kill the process outright.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        loop.call_later(0.1, _stop_like_sigterm, loop)
        return
    os.kill(os.getpid(), signal.SIGTERM)
