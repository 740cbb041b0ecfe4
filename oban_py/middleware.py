"""Middleware: code of your own around every insert and every attempt, each link calling the next.

A middleware is an instance of a ``Middleware`` subclass overriding any of its methods; the
others pass through. As River's insert and work middleware, each method receives the jobs (or
job) and ``call_next``, and decides what happens before and after the rest of the chain:

- ``insert(jobs, call_next)`` around every async insert (``Client.enqueue``, ``enqueue_many``,
  ``Worker.enqueue``...), ``insert_sync(jobs, call_next)`` around every sync one
  (``enqueue_sync``, ``enqueue_many_sync``, Django's ``enqueue``). ``call_next(jobs)`` inserts
  the jobs it is given (a middleware may amend them, e.g. add ``meta`` keys) and returns them
  as stored. A subclass overriding one of the two must override the other: an insert path that
  silently skips a middleware is worse than an error at import time.
- ``work(job, call_next)`` around every attempt, in the attempt's task. ``call_next()`` runs
  the rest (inner middleware, then ``process`` and Elixir's outcome rule) and returns the
  ``AttemptOutcome``: the state the job will be left in, what ``process`` returned or raised,
  and why this node interrupted it, if it did. It never raises: failures, timeouts, snoozes,
  cancels, discards and this node's interrupts all come back as outcomes. A middleware that
  raises (before or after ``call_next``) fails the attempt with its error, as if the worker had
  raised it; one that returns anything but the outcome ``call_next`` gave it for this job (a
  hand-built ``AttemptOutcome``, another job's) fails it with a ``TypeError``. The chain's last
  outcome is what the node writes.
- ``work_in_thread(job, call_next)`` in the pool thread that runs a plain ``def process``
  (inside ``work``), for state that belongs to that thread (Django's connections);
  ``call_next()`` returns what ``process`` returned and raises what it raised. Both run the
  attempt's own job: a middleware may read it, not swap it.

Where middleware is registered, outermost first: process-wide with ``add_middleware(id, mw)``
(integrations such as OpenTelemetry), on an instance with ``Oban(middleware=[...])`` /
``Client(middleware=[...])``, and per worker with the class attribute ``middleware = [...]``
(work only: an insert may carry jobs of many workers). See docs/middleware.md for the order
against telemetry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, NamedTuple

from oban_py.job.errors import safe_repr
from oban_py.job.model import Job

InsertNext = Callable[[list[Job]], Awaitable[list[Job]]]
InsertNextSync = Callable[[list[Job]], list[Job]]
ThreadNext = Callable[[], Any]


class AttemptOutcome(NamedTuple):
    """What one attempt came to, as the node is about to write it."""

    #: the state the job is left in: ``completed``, ``retryable``, ``discarded``, ``cancelled``,
    #: ``scheduled`` (snoozed), or ``available`` (released by this node's shutdown or fencing)
    state: str
    #: what ``process`` returned (``None``, a value, ``Snooze``, ``Cancel``, ``Record``), or the
    #: exception the attempt ended with
    result: Any
    #: the exception that failed the attempt (None when it did not fail)
    error: BaseException | None = None
    #: why this node interrupted the attempt: ``"pkill"`` (a cancel), ``"shutdown"``,
    #: ``"fenced"``; None when it ran to its end
    interrupted: str | None = None
    #: what the node writes; opaque to middleware
    ack: Any = None

    @property
    def snoozed(self) -> bool:
        return self.state == "scheduled"


WorkNext = Callable[[], Awaitable[AttemptOutcome]]


class Middleware:
    """Base class of middleware: every method passes through until overridden."""

    _PAIRS: ClassVar[tuple[tuple[str, str], ...]] = (("insert", "insert_sync"),)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for one, other in cls._PAIRS:
            if _overrides(cls, one) != _overrides(cls, other):
                raise TypeError(
                    f"{cls.__qualname__} overrides only one of {one}/{other}: override both, "
                    "so async and sync inserts go through the same middleware"
                )

    async def insert(self, jobs: list[Job], call_next: InsertNext) -> list[Job]:
        return await call_next(jobs)

    def insert_sync(self, jobs: list[Job], call_next: InsertNextSync) -> list[Job]:
        return call_next(jobs)

    async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
        return await call_next()

    def work_in_thread(self, job: Job, call_next: ThreadNext) -> Any:
        return call_next()


def _overrides(cls: type, name: str) -> bool:
    return getattr(cls, name) is not getattr(Middleware, name)


def overrides(middleware: Middleware, method: str) -> bool:
    """True when ``middleware`` does something in ``method`` (not the pass-through)."""
    return _overrides(type(middleware), method)


class AmendJobs(Middleware):
    """Insert middleware from a plain ``amend(job) -> job``, applied to each job, async or sync.

    The shape of the former insert hooks; ``add_insert_hook(id, amend)`` registers one.
    """

    def __init__(self, amend: Callable[[Job], Job]) -> None:
        self.amend = amend

    async def insert(self, jobs: list[Job], call_next: InsertNext) -> list[Job]:
        return await call_next([self.amend(job) for job in jobs])

    def insert_sync(self, jobs: list[Job], call_next: InsertNextSync) -> list[Job]:
        return call_next([self.amend(job) for job in jobs])


# -- the process-wide registry ------------------------------------------------------------------

_registered: dict[str, Middleware] = {}


def add_middleware(middleware_id: str, middleware: Middleware) -> None:
    """Run ``middleware`` around every insert and attempt of every instance of this process,
    outside instance and worker middleware; re-adding an id replaces it in place."""
    if not isinstance(middleware, Middleware):
        raise TypeError(f"middleware must be a Middleware instance, got {middleware!r}")
    _registered[middleware_id] = middleware


def remove_middleware(middleware_id: str) -> bool:
    """Remove a process-wide middleware; True when it was there."""
    return _registered.pop(middleware_id, None) is not None


def add_insert_hook(hook_id: str, hook: Callable[[Job], Job]) -> None:
    """``add_middleware(hook_id, AmendJobs(hook))``: the former insert hook, as middleware."""
    add_middleware(hook_id, AmendJobs(hook))


def remove_insert_hook(hook_id: str) -> bool:
    """``remove_middleware(hook_id)``."""
    return remove_middleware(hook_id)


def checked(middleware: Sequence[Middleware]) -> tuple[Middleware, ...]:
    """``middleware`` as a tuple, every element checked (instance and worker settings)."""
    for each in middleware:
        if not isinstance(each, Middleware):
            raise TypeError(f"middleware must be Middleware instances, got {each!r}")
    return tuple(middleware)


def stack(method: str, *layers: Sequence[Middleware]) -> tuple[Middleware, ...]:
    """The process-wide middleware, then each of ``layers``, keeping those that override
    ``method`` (outermost first): a chain of pass-throughs costs nothing."""
    if not _registered and not any(layers):
        return ()
    found = [m for m in _registered.values() if _overrides(type(m), method)]
    for layer in layers:
        found.extend(m for m in layer if _overrides(type(m), method))
    return tuple(found)


# -- running a chain -----------------------------------------------------------------------------


async def insert_through(
    links: Sequence[Middleware], jobs: list[Job], inner: InsertNext
) -> list[Job]:
    """``inner(jobs)`` inside ``links`` (outermost first)."""
    if not links:
        return await inner(jobs)

    def link(index: int) -> InsertNext:
        if index == len(links):
            return inner

        async def call(batch: list[Job]) -> list[Job]:
            return await links[index].insert(list(batch), link(index + 1))

        return call

    return await link(0)(jobs)


def insert_through_sync(
    links: Sequence[Middleware], jobs: list[Job], inner: InsertNextSync
) -> list[Job]:
    """``insert_through`` for sync inserts."""
    if not links:
        return inner(jobs)

    def link(index: int) -> InsertNextSync:
        if index == len(links):
            return inner

        def call(batch: list[Job]) -> list[Job]:
            return links[index].insert_sync(list(batch), link(index + 1))

        return call

    return link(0)(jobs)


async def work_through(
    links: Sequence[Middleware],
    job: Job,
    inner: WorkNext,
    failed: Callable[[BaseException], AttemptOutcome],
    ours: Callable[[AttemptOutcome], bool],
) -> AttemptOutcome:
    """``inner()`` inside ``links``; ``failed(error)`` is the outcome of a link that raised or
    returned something else than an outcome of this attempt (``ours``), so every ``call_next``
    returns an outcome the node can write."""
    if not links:
        return await inner()

    def link(index: int) -> WorkNext:
        if index == len(links):
            return inner

        async def call() -> AttemptOutcome:
            try:
                outcome = await links[index].work(job, link(index + 1))
                if isinstance(outcome, AttemptOutcome) and ours(outcome):
                    return outcome
                wrong = TypeError(_not_an_outcome(links[index], outcome))
            except BaseException as error:
                return failed(error)
            return failed(wrong)

        return call

    return await link(0)()


def _not_an_outcome(link: Middleware, outcome: Any) -> str:
    name = f"{type(link).__qualname__}.work"
    if not isinstance(outcome, AttemptOutcome):
        return f"{name} returned {safe_repr(outcome)}, not call_next's outcome"
    # Built by hand (no ack) or kept from another attempt: the node could not write it.
    return (
        f"{name} returned an AttemptOutcome that call_next did not give it for this attempt "
        f"(ack {safe_repr(outcome.ack)}): return the outcome call_next gave you"
    )


def thread_through(links: Sequence[Middleware], job: Job, process: Callable[[Job], Any]) -> Any:
    """``process(job)`` inside the ``work_in_thread`` of ``links``, in the calling thread."""
    if not links:
        return process(job)

    def link(index: int) -> ThreadNext:
        if index == len(links):
            return lambda: process(job)
        return lambda: links[index].work_in_thread(job, link(index + 1))

    return link(0)()
