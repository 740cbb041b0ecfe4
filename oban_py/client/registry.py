"""Instances by name, so ``Worker.enqueue(oban="Oban")`` finds the client to insert through.

The registry knows nothing of what it holds (``client.core`` registers its clients and types the
look-up), so it sits below the client instead of importing it back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from oban_py.job.errors import InstanceNotFound

_instances: dict[str, Any] = {}
T = TypeVar("T")


def register(name: str, instance: object) -> None:
    """Make ``instance`` the one named ``name``; the last one registered wins."""
    _instances[name] = instance


def forget(name: str, instance: object) -> None:
    """Drop ``name`` if it still names ``instance`` (a newer one of that name stays)."""
    if _instances.get(name) is instance:
        del _instances[name]


def lookup(name: str) -> Any:
    """The instance registered as ``name``; ``InstanceNotFound`` names the known ones."""
    try:
        return _instances[name]
    except KeyError:
        known = ", ".join(sorted(_instances)) or "none"
        raise InstanceNotFound(
            f"no Oban client named {name!r} exists (known: {known}); create "
            f"Client(dsn=..., name={name!r}) or Oban(...) first"
        ) from None


def unregistered(make: Callable[[], T]) -> T:
    """``make()`` (building a client or node) without it taking the name of an instance the
    application registered: for tools (a dashboard) that need a client of their own."""
    before = dict(_instances)
    made = make()
    _instances.clear()
    _instances.update(before)
    return made
