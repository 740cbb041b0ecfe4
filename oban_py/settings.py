"""Where a node's ``Config`` comes from when it is started from the command line.

Precedence, highest first:

1. command-line arguments (``oban-py start --queues ...``);
2. environment variables: ``OBAN_<FIELD>`` (``OBAN_QUEUES``, ``OBAN_NODE``, ``OBAN_PREFIX`` ...),
   nested fields with a double underscore (``OBAN_PRUNER__MAX_AGE=3600``), and for the DSN
   ``OBAN_DSN`` then ``DATABASE_URL``;
3. ``oban.toml`` in the working directory (top-level keys are the fields);
4. ``[tool.oban]`` in ``pyproject.toml`` in the working directory;
5. the defaults of ``Config``.

Library code that builds ``Oban(config=Config(...))`` reads none of these: only the CLI (and
anyone calling ``load_config``) does, so a test or an embedded app is never configured by a
stray environment variable. Pydantic-settings could merge these sources, but only by making
``Config`` itself read the environment whenever it is instantiated, which is exactly that
surprise; the merge here is a few explicit lines instead.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from oban_py.config import Config

ENV_PREFIX = "OBAN_"
#: OBAN_* variables that are not Config fields but are read elsewhere (the pytest plugin).
OTHER_VARIABLES = frozenset({"OBAN_DSN", "OBAN_TEST_DSN"})


class SettingsError(ValueError):
    """A setting is invalid; the message names the field, the reason and where it came from."""


def parse_queues(spec: str) -> dict[str, Any]:
    """``"mailers:10,default:5"`` → ``{"mailers": 10, "default": 5}``; a bare name gets 10.

    ``NAME:LIMIT`` is the one syntax (the CLI, ``OBAN_QUEUES``, ``oban.toml`` and Django's
    ``manage.py oban start --queue``). A name holding ``=`` or whitespace is refused rather than
    started as a queue nobody enqueues into: ``mailers=10`` is a typo of ``mailers:10``.
    Cluster-wide limits follow as more ``:OPTION=VALUE`` parts (``oban_py.flow``):
    ``exports:10:global=3:global_by=args.account_id:rate=50/5:rate_by=worker``.
    """
    queues: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, limit, *options = [*part.split(":"), ""][: max(2, part.count(":") + 1)]
        name = name.strip()
        if not name:
            raise SettingsError(f"queues: empty queue name in {spec!r}")
        if "=" in name or any(c.isspace() for c in name):
            guess = ":".join(name.replace("=", " ").split())
            raise SettingsError(
                f"queues: {part!r} is not NAME:LIMIT (did you mean {guess!r}?);"
                " expected e.g. mailers:10,default:5"
            )
        try:
            count = int(limit) if limit.strip() else 10
        except ValueError:
            raise SettingsError(
                f"queues: limit of {name!r} must be a whole number, got {limit!r} "
                "(expected e.g. mailers:10,default:5)"
            ) from None
        queues[name] = _flow_options(name, count, options) if options else count
    return queues


def _flow_options(name: str, limit: int, options: list[str]) -> dict[str, Any]:
    """``global=3``, ``global_by=worker+args.account_id``, ``rate=50/5``, ``rate_by=...``."""
    spec: dict[str, Any] = {"limit": limit}
    given = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key.strip() not in ("global", "global_by", "rate", "rate_by"):
            raise SettingsError(
                f"queues: {name}: unknown option {option!r}; expected global=N, rate=N/SECONDS,"
                " global_by=... or rate_by=... (worker, args.KEY, joined by +)"
            )
        given[key.strip()] = value.strip()
    try:
        if "global" in given:
            spec["global_limit"] = {"allowed": int(given["global"])}
        if "rate" in given:
            allowed, _, period = given["rate"].partition("/")
            spec["rate_limit"] = {"allowed": int(allowed), "period": float(period or 1)}
    except ValueError:
        raise SettingsError(
            f"queues: {name}: global=N and rate=N/SECONDS take numbers, got {given}"
        ) from None
    for side, limit_key in (("global", "global_limit"), ("rate", "rate_limit")):
        by = given.get(f"{side}_by")
        if by is None:
            continue
        if limit_key not in spec:
            raise SettingsError(f"queues: {name}: {side}_by needs {side}=...")
        spec[limit_key]["partition"] = _partition(name, by)
    return spec


def _partition(name: str, by: str) -> dict[str, Any]:
    fields: list[str] = []
    keys: list[str] = []
    for item in filter(None, (i.strip() for i in by.split("+"))):
        if item == "worker":
            fields.append("worker")
        elif item == "args" or item.startswith("args."):
            if "args" not in fields:
                fields.append("args")
            if item != "args":
                keys.append(item[len("args.") :])
        else:
            raise SettingsError(f"queues: {name}: partition by worker or args.KEY, not {item!r}")
    return {"fields": fields, "keys": keys}


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    fields = set(Config.model_fields)
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key == "OBAN_DSN":
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in fields:
            continue
        value: Any = parse_queues(raw) if path == ["queues"] else raw
        target = values
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    if dsn := env.get("OBAN_DSN") or env.get("DATABASE_URL"):
        values["dsn"] = dsn
    return values


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise SettingsError(f"cannot read config file {path}: {error.strerror}") from None


def _queues_in(table: dict[str, Any], path: Path) -> dict[str, Any]:
    if isinstance(table.get("queues"), str):
        try:
            table["queues"] = parse_queues(table["queues"])
        except SettingsError as error:
            raise SettingsError(f"{path}: {error}") from None
    return table


def unknown_variables(env: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``OBAN_*`` variables that name no setting, each with the one it may be a typo of.

    They are ignored (an application may use the prefix for its own), so a typo such as
    ``OBAN_QUEUE`` would silently start a node with no queues: the CLI warns about them.
    """
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Config.model_fields}
    found = []
    for key in sorted(os.environ if env is None else env):
        if not key.startswith(ENV_PREFIX) or key in OTHER_VARIABLES:
            continue
        if key.split("__")[0] in known:
            continue
        close = difflib.get_close_matches(key.split("__")[0], sorted(known), n=1, cutoff=0.8)
        found.append((key, close[0] if close else None))
    return found


def _from_toml(cwd: Path, config_file: Path | None) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if config_file is not None:
        # An explicit file replaces both of the working directory's.
        table = _read_toml(config_file)
        if config_file.name == "pyproject.toml":
            table = table.get("tool", {}).get("oban", {})
        return [(str(config_file), _queues_in(table, config_file))]
    if (path := cwd / "pyproject.toml").is_file():
        table = _read_toml(path).get("tool", {}).get("oban", {})
        found.append((f"{path} [tool.oban]", _queues_in(table, path)))
    if (path := cwd / "oban.toml").is_file():
        found.append((str(path), _queues_in(_read_toml(path), path)))
    return found


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict) and key != "queues":
            merged[key] = _merge(merged[key], value)
        elif value is not None:
            merged[key] = value
    return merged


def load_config(
    arguments: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    config_file: Path | None = None,
) -> Config:
    """Build a ``Config`` from every source above; ``None`` arguments are treated as unset.

    ``config_file`` (``oban-py start --config PATH``) is read instead of ``oban.toml`` and
    ``pyproject.toml``; a ``pyproject.toml`` given there is read from its ``[tool.oban]``.
    An invalid setting is reported with the files it may come from.
    """
    files = _from_toml(cwd or Path.cwd(), config_file)
    sources = [table for _, table in files]
    sources += [_from_env(os.environ if env is None else env), dict(arguments or {})]
    merged: dict[str, Any] = {}
    for source in sources:
        merged = _merge(merged, source)
    try:
        return Config.model_validate(merged)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in error.errors()
        )
        origin = f" (settings read from {', '.join(name for name, _ in files)})" if files else ""
        raise SettingsError(f"invalid configuration: {problems}{origin}") from None
