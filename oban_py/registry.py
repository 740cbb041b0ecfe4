"""Clients by instance name, so ``Worker.enqueue(oban="Oban")`` finds the one to insert through."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from oban_py.errors import InstanceNotFound

if TYPE_CHECKING:
    from oban_py.client import Client

_instances: dict[str, Client] = {}
T = TypeVar("T")


def register(name: str, client: Client) -> None:
    """Make ``client`` the instance named ``name``; the last one registered wins."""
    _instances[name] = client


def forget(name: str, client: Client) -> None:
    """Drop ``name`` if it still names ``client`` (a newer client of that name stays)."""
    if _instances.get(name) is client:
        del _instances[name]


def get_instance(name: str = "Oban") -> Client:
    """The ``Client`` (or ``Oban`` node) created with ``name``; the last one created wins."""
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
