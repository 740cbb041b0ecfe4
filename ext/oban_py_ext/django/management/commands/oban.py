"""``manage.py oban install|migrate|version|start``.

``start`` runs a node with ``OBAN`` settings until SIGINT/SIGTERM, after importing each installed
app's ``workers`` module (where its workers are defined) and ``OBAN["workers"]`` modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
from argparse import SUPPRESS, ArgumentParser
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import autodiscover_modules

from oban_py import Oban, schema
from oban_py.settings import SettingsError, parse_queues
from oban_py_ext.django import conf


class Command(BaseCommand):
    help = "Install or migrate the Oban schema, or run an Oban node with the OBAN settings."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("install", help="install the schema (or upgrade it) in OBAN['prefix']")
        sub.add_parser("migrate", help="bring the schema to this library's version")
        sub.add_parser("version", help="print the schema version recorded in the database")
        start = sub.add_parser("start", help="run a node until SIGINT or SIGTERM")
        start.add_argument(
            "--queue", action="append", default=[], metavar="NAME:LIMIT", help="repeatable"
        )
        # For tests and smoke checks: stop by itself after this many seconds.
        start.add_argument("--run-for", type=float, default=None, help=SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action in ("install", "migrate"):
            found, now = asyncio.run(self._migrate())
            self.stdout.write(f"oban schema in {conf.prefix()!r}: version {found} -> {now}")
        elif action == "version":
            self.stdout.write(str(asyncio.run(self._version())))
        elif action == "start":
            queues = dict(conf.options().get("queues", {}))
            for spec in options["queue"]:
                try:
                    queues.update(parse_queues(spec))
                except SettingsError as error:
                    raise CommandError(f"--queue takes NAME:LIMIT: {error}") from None
            self._import_workers()
            asyncio.run(self._start(queues, options["run_for"]))

    async def _migrate(self) -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(conf.dsn(), autocommit=True) as conn:
            return await schema.migrate(conn, conf.prefix())

    async def _version(self) -> int:
        async with await psycopg.AsyncConnection.connect(conf.dsn(), autocommit=True) as conn:
            return await schema.migrated_version(conn, conf.prefix())

    def _import_workers(self) -> None:
        autodiscover_modules("workers")
        for module in conf.options().get("workers", []):
            importlib.import_module(module)

    async def _start(self, queues: dict[str, Any], run_for: float | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        config = conf.config(queues=queues)
        async with Oban(config) as node:
            self.stdout.write(
                f"oban node {node.config.node} running {', '.join(queues) or 'no queues'}"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), run_for)
        self.stdout.write("oban node stopped")
