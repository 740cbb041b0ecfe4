"""What a planner hands a driver: statements to run, and a program that reads their rows.

A ``Program`` is a generator: it yields a ``Statement``, is sent that statement's rows back, and
finally returns its result. It never touches a connection, so one program serves the async and
the sync driver alike, and a test can run it against recorded rows.

A ``pipelined`` statement is only sent (in psycopg's pipeline mode) and answered with ``[]`` at
once; the program collects its rows later by yielding ``RECEIVE``, oldest first. In between it
may do its own work while the server runs the statement. A ``Copy`` is sent the same way (its
rows written, the server reading them), and ``RECEIVE`` waits for the server to finish it;
nothing is pipelined beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which tripled the
# cost of making one, and one is made per enqueue. Nothing changes a statement once made.
@dataclass(slots=True)
class Statement:
    """One statement: its rendered query, parameters (named, or positional), and how its rows
    come back.

    ``dicts`` rows are full job rows (mappings, JSON decoded exactly); otherwise tuples.
    ``prepare=False`` asks for a plan made for these very parameter values, for statements
    whose parameters switch conditions on and off.
    """

    query: bytes
    params: Mapping[str, Any] | Sequence[Any] = field(default_factory=dict)
    dicts: bool = False
    prepare: bool | None = None
    pipelined: bool = False


@dataclass(slots=True)
class Copy:
    """``COPY ... FROM STDIN`` (``query``, text format) of ``data``, whole rows of it."""

    query: bytes
    data: bytes


class Receive:
    """Yielded to collect the rows of the oldest pipelined statement not yet received."""

    __slots__ = ()


RECEIVE = Receive()

Program = Generator[Statement | Copy | Receive, list[Any], T]


@dataclass(slots=True)
class Work(Generic[T]):
    """A program to run, and whether its statements must share one transaction.

    ``program(own_transaction)`` is told whether the transaction is the driver's own (no
    statement of the caller's ran in it before, none will after) or the caller's.
    """

    program: Callable[[bool], Program[T]]
    transaction: bool = False
    #: Work of one tuple statement also carries it and what makes the result of its rows, so a
    #: driver may run it without stepping the program (the same thing, a microsecond sooner).
    one: tuple[Statement, Callable[[list[Any]], T]] | None = None


def one_statement(statement: Statement, finish: Callable[[list[Any]], T]) -> Work[T]:
    """The work of running ``statement`` (tuple rows, not pipelined) and ``finish(rows)``."""
    if statement.dicts or statement.pipelined:
        raise ValueError("one_statement runs a tuple statement, not pipelined")

    def program(own_transaction: bool) -> Program[T]:
        return finish((yield statement))

    return Work(program, one=(statement, finish))
