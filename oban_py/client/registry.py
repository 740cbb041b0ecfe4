"""Instances by name, so ``Worker.enqueue(oban="Oban")`` finds the client to insert through.

The registry knows nothing of what it holds (``client.core`` registers its clients and types the
look-up), so it sits below the client instead of importing it back.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from oban_py.job.errors import InstanceNotFound

_instances: dict[str, Any] = {}
#: By name, the instances registered before the current one and not yet forgotten, oldest
#: first. Weakly held: one nobody else keeps (a client made per request and never closed) goes,
#: while one an application keeps (a Flask app's own client) comes back when the instance
#: that stood in for it (a test's ``TestingClient``) is forgotten.
_earlier: dict[str, list[weakref.ref[Any]]] = {}
T = TypeVar("T")


def register(name: str, instance: object) -> None:
    """Make ``instance`` the one named ``name``; the last one registered wins."""
    current = _instances.get(name)
    if current is not None and current is not instance:
        earlier = _earlier.setdefault(name, [])
        earlier[:] = [ref for ref in earlier if ref() is not None]
        earlier.append(weakref.ref(current))
    _instances[name] = instance


def forget(name: str, instance: object) -> None:
    """Drop ``instance`` from ``name``; the newest earlier one still alive is named again."""
    earlier = _earlier.get(name, [])
    earlier[:] = [ref for ref in earlier if ref() is not None and ref() is not instance]
    if _instances.get(name) is instance:
        del _instances[name]
        while earlier:
            if (back := earlier.pop()()) is not None:
                _instances[name] = back
                break
    if not earlier:
        _earlier.pop(name, None)


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
    before, earlier = dict(_instances), {name: list(refs) for name, refs in _earlier.items()}
    made = make()
    _instances.clear()
    _instances.update(before)
    _earlier.clear()
    _earlier.update(earlier)
    return made
