"""Workers: ``Worker`` subclasses, the ``@worker`` class decorator, ``@job`` for plain functions,
and the registry that resolves a stored worker name to the class that runs it.

A worker's name is what goes in the ``worker`` column. By default it is ``module.ClassName``;
``name="MyApp.Workers.Mailer"`` lets a Python class work jobs inserted by Elixir under that name.

Typed args: set ``args_model`` to a pydantic model. ``new`` validates args against it, and before
``process`` the runtime calls ``build_args(job)``, which validates the stored args and makes the
model available as ``job.typed_args``.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, overload

from pydantic import BaseModel, ValidationError

from oban_py import crontab
from oban_py.client.core import get_instance, require_loop
from oban_py.job.errors import InvalidArgs, UnknownWorker
from oban_py.job.model import Job, Template
from oban_py.middleware import Middleware, checked

if TYPE_CHECKING:
    from psycopg import AsyncConnection, Connection

_registry: dict[str, type[Worker]] = {}
#: names that imported no worker, and when: not searched for again until MISS_RETRY has passed
_misses: dict[str, float] = {}
#: seconds before a name that imported no worker is looked for again (a deploy may add it)
MISS_RETRY = 60.0

#: Job options a worker may default; ``new(**opts)`` overrides them per job.
OPTIONS = ("queue", "priority", "max_attempts", "tags", "unique", "replace", "meta")

#: Where ``process`` runs: ``"thread"`` (a plain ``def`` in a node thread, an ``async def`` on
#: the loop) or ``"process"`` (a worker process of the queue: ``oban_py.node.processes``).
Executor = Literal["thread", "process"]
#: what ``new(**opts)`` accepts: the job's fields and ``schedule_in``
_JOB_OPTIONS = frozenset(Job.model_fields) | {"schedule_in"}
EXECUTORS: tuple[Executor, ...] = ("thread", "process")


class Worker:
    """Base class of workers. Subclasses define ``process(self, job)``, async or plain.

    Optional hooks: ``backoff(job) -> float`` seconds before a retry (Elixir's default when
    absent), ``timeout(job) -> float | None`` seconds (>= 0) a run may take (``None`` or
    ``math.inf``: no limit; any other answer fails the attempt) and ``should_retry(job,
    error) -> bool`` (by default from ``discard_on`` and ``retry_on``).
    Set ``args_model`` for typed args. Class options: ``queue``, ``priority``, ``max_attempts``,
    ``tags``, ``unique``, ``replace``, ``meta``, ``name`` (as class attributes or ``@worker``).
    ``executor = "process"`` runs ``process`` in a worker process (CPU-bound work; a hard
    timeout and cancel), which imports the worker by its module and class name.
    """

    __oban_name__: ClassVar[str]
    __oban_options__: ClassVar[dict[str, Any]] = {}
    args_model: ClassVar[type[BaseModel] | None] = None
    #: the class's options validated once, for ``new`` (made on its first call)
    __oban_template__: ClassVar[Template | None] = None
    #: Errors that discard the job at once, whatever attempts are left (for example
    #: ``InvalidArgs``: args that fail ``args_model`` never pass on a later attempt).
    discard_on: ClassVar[tuple[type[BaseException], ...]] = ()
    #: When set, only these errors are retried; any other discards the job at once.
    retry_on: ClassVar[tuple[type[BaseException], ...] | None] = None
    #: work middleware of this worker's attempts only, inside the instance's (``work`` and
    #: ``work_in_thread``; see ``oban_py.middleware``)
    middleware: ClassVar[Sequence[Middleware]] = ()
    executor: ClassVar[Executor] = "thread"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        options = {k: v for k, v in cls.__oban_options__.items()}
        for key in OPTIONS:
            if key in cls.__dict__:
                options[key] = cls.__dict__[key]
        cls.__oban_options__ = options
        if cls.executor not in EXECUTORS:
            raise ValueError(
                f"{cls.__qualname__}: executor must be one of {EXECUTORS}, got {cls.executor!r}"
            )
        explicit = cls.__dict__.get("name") or cls.__dict__.get("__oban_name__")
        cls.__oban_name__ = explicit or f"{cls.__module__}.{cls.__qualname__}"
        if cls.process is not Worker.process:
            register(cls)

    def process(self, job: Job) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define process(self, job)")

    def timeout(self, job: Job) -> float | None:
        return None

    def should_retry(self, job: Job, error: BaseException) -> bool:
        """False to discard the job at once for ``error`` (an attempt that raised or timed
        out); True (the default, as Elixir) retries it until ``max_attempts``."""
        if self.discard_on and isinstance(error, self.discard_on):
            return False
        return self.retry_on is None or isinstance(error, self.retry_on)

    @classmethod
    def new(cls, args: Mapping[str, Any] | BaseModel | None = None, **opts: Any) -> Job:
        """A validated ``Job`` for this worker; ``opts`` override the worker's defaults."""
        if not opts and (args is None or args.__class__ is dict):
            template = cls.__oban_template__
            if template is None or template.options is not cls.__oban_options__:
                template = cls._template()
            if template is not None:
                built = template.build({} if args is None else args)
                if built is not None:
                    return built
        unknown = opts.keys() - _JOB_OPTIONS
        if unknown:
            raise TypeError(f"unknown job option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {**cls.__oban_options__, **opts}
        values["worker"] = cls.__oban_name__
        values["args"] = cls._dump_args({} if args is None else args)
        return Job(**values)

    @classmethod
    def _template(cls) -> Template | None:
        """The worker's options validated once for ``new``; None for typed args (each job's
        are validated by its model) and while the options are invalid (each ``new`` then
        raises the validation's error)."""
        if cls.args_model is not None:
            return None
        try:
            template = Template(cls.__oban_options__, worker=cls.__oban_name__)
        except ValueError:
            return None
        # A subclass inherits it with options of its own, so it is remade there (their
        # identity is what ``new`` compares).
        cls.__oban_template__ = template
        return template

    @classmethod
    def enqueue(
        cls,
        args: Mapping[str, Any] | BaseModel | None = None,
        conn: AsyncConnection[Any] | Connection[Any] | None = None,
        *,
        oban: str = "Oban",
        **opts: Any,
    ) -> Coroutine[Any, Any, Job]:
        """Insert a job through the ``Client`` registered as ``oban`` (default ``"Oban"``).

        Must be awaited in async code; called outside an event loop it raises at once (use
        ``enqueue_sync``) rather than return a coroutine that would never insert anything.
        """
        require_loop("enqueue")
        return get_instance(oban).enqueue(cls.new(args, **opts), conn=conn)

    @classmethod
    def enqueue_sync(
        cls,
        args: Mapping[str, Any] | BaseModel | None = None,
        conn: Connection[Any] | None = None,
        *,
        oban: str = "Oban",
        **opts: Any,
    ) -> Job:
        """``enqueue`` from sync code: on ``conn`` (a sync psycopg connection, joining its
        transaction) or the client's sync pool."""
        return get_instance(oban).enqueue_sync(cls.new(args, **opts), conn=conn)

    @classmethod
    def build_args(cls, job: Job) -> Any:
        """The args ``process`` works with: an ``args_model`` instance, or the plain dict.

        Raises ``InvalidArgs`` naming the worker and the failing fields.
        """
        model = cls.args_model
        if model is None:
            return job.args
        try:
            typed = model.model_validate(job.args)
        except ValidationError as error:
            raise InvalidArgs(
                f"{cls.__oban_name__} args do not match {model.__name__}: {error}"
            ) from None
        job._typed_args = typed
        return typed

    @classmethod
    def _dump_args(cls, args: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
        if not isinstance(args, Mapping | BaseModel):
            raise InvalidArgs(
                f"{cls.__oban_name__} args must be a JSON object (a dict or a pydantic model), "
                f"got {type(args).__name__}"
            )
        model = cls.args_model
        if model is None:
            if isinstance(args, BaseModel):
                return args.model_dump(mode="json")
            return dict(args)
        try:
            typed = args if isinstance(args, model) else model.model_validate(args)
        except ValidationError as error:
            raise InvalidArgs(
                f"{cls.__oban_name__} args do not match {model.__name__}: {error}"
            ) from None
        return typed.model_dump(mode="json")


def register(cls: type[Worker], name: str | None = None) -> type[Worker]:
    """Make ``cls`` the worker for ``name`` (its ``__oban_name__`` by default). Last one wins."""
    _registry[name or cls.__oban_name__] = cls
    _misses.pop(name or cls.__oban_name__, None)
    return cls


def registered() -> dict[str, type[Worker]]:
    """A copy of the registry: name → worker class."""
    return dict(_registry)


def lookup(name: str) -> type[Worker] | None:
    """The worker registered as ``name``, without importing anything."""
    return _registry.get(name)


def resolve(name: str) -> type[Worker]:
    """The worker registered as ``name``; else import ``module.Class``; else ``UnknownWorker``.

    A name that imported nothing is not imported again for ``MISS_RETRY`` seconds: the names
    come from job rows, and a queue full of one unknown worker would otherwise search the
    import path for every one of its jobs."""
    found = _registry.get(name)
    if found is not None:
        return found
    missed = _misses.get(name)
    if missed is not None and time.monotonic() - missed < MISS_RETRY:
        raise UnknownWorker(name)
    imported = _import(name)
    if imported is None:
        _misses[name] = time.monotonic()
        raise UnknownWorker(name)
    _misses.pop(name, None)
    return register(imported, name)


def _import(name: str) -> type[Worker] | None:
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                target = getattr(target, attr)
        except AttributeError:
            return None
        if isinstance(target, type) and issubclass(target, Worker):
            return target
        # Importing the module may have registered a worker under this name (a Django task
        # backend registers one per @task function, which is no Worker class itself).
        return _registry.get(name)
    return None


def _apply(cls: type[Any], options: dict[str, Any], name: str | None) -> type[Worker]:
    namespace: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    namespace["__module__"] = cls.__module__
    namespace["__qualname__"] = cls.__qualname__
    namespace["__doc__"] = cls.__doc__
    if name:
        namespace["name"] = name
    bases = (cls,) if issubclass(cls, Worker) else (cls, Worker)
    return type(cls.__name__, bases, namespace)


@overload
def worker(cls: type[Any], /) -> type[Worker]: ...


@overload
def worker(
    cls: None = None,
    /,
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    tags: list[str] | None = None,
    unique: Any = None,
    replace: Any = None,
    meta: dict[str, Any] | None = None,
    name: str | None = None,
    args_model: type[BaseModel] | None = None,
    cron: str | dict[str, Any] | None = None,
    backoff: Callable[[Job], float] | None = None,
    discard_on: tuple[type[BaseException], ...] | None = None,
    retry_on: tuple[type[BaseException], ...] | None = None,
    middleware: Sequence[Middleware] | None = None,
    executor: Executor | None = None,
) -> Callable[[type[Any]], type[Worker]]: ...


def worker(
    cls: type[Any] | None = None,
    /,
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    tags: list[str] | None = None,
    unique: Any = None,
    replace: Any = None,
    meta: dict[str, Any] | None = None,
    name: str | None = None,
    args_model: type[BaseModel] | None = None,
    cron: str | dict[str, Any] | None = None,
    backoff: Callable[[Job], float] | None = None,
    discard_on: tuple[type[BaseException], ...] | None = None,
    retry_on: tuple[type[BaseException], ...] | None = None,
    middleware: Sequence[Middleware] | None = None,
    executor: Executor | None = None,
) -> type[Worker] | Callable[[type[Any]], type[Worker]]:
    """Make a class with ``process(self, job)`` a registered worker, with default job options.

    Options are validated at once (a bad queue fails at import, not at the first insert).
    ``cron`` (an expression, or ``{"expr", "timezone", "args"}``) makes the leader insert the
    worker's jobs on that schedule (see ``oban_py.crontab``). ``backoff(job) -> seconds``,
    ``discard_on`` and ``retry_on`` are the worker's retry policy (docs/workers.md).
    ``middleware``: work middleware of this worker's attempts (``oban_py.middleware``).
    ``executor="process"`` runs ``process`` in a worker process of the queue (see ``Worker``).
    """
    options = {
        "queue": queue,
        "priority": priority,
        "max_attempts": max_attempts,
        "tags": tags,
        "unique": unique,
        "replace": replace,
        "meta": meta,
    }
    if args_model is not None:
        options["args_model"] = args_model
    if backoff is not None:
        options["backoff"] = staticmethod(backoff)
    if discard_on is not None:
        options["discard_on"] = tuple(discard_on)
    if retry_on is not None:
        options["retry_on"] = tuple(retry_on)
    if middleware is not None:
        options["middleware"] = checked(middleware)
    if executor is not None:
        options["executor"] = executor

    def decorate(target: type[Any]) -> type[Worker]:
        if not callable(getattr(target, "process", None)):
            raise TypeError(f"{target.__qualname__} needs a process(self, job) method")
        built = _apply(target, options, name)
        _check(built)
        if cron is not None:
            # Registered here, inserted by the leader's Cron duty (oban_py.cluster.cron).
            crontab.register(built.__oban_name__, cron)
        return built

    return decorate(cls) if cls is not None else decorate


def _check(cls: type[Worker]) -> None:
    opts = {k: v for k, v in cls.__oban_options__.items() if v is not None}
    Job(worker=cls.__oban_name__, **opts)


class FunctionWorker(Worker):
    """The class ``@job`` makes of a function; ``func`` is the function itself."""

    func: ClassVar[Callable[..., Any]]


@overload
def job(fn: Callable[..., Any], /) -> type[FunctionWorker]: ...


@overload
def job(
    fn: None = None,
    /,
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    tags: list[str] | None = None,
    unique: Any = None,
    replace: Any = None,
    meta: dict[str, Any] | None = None,
    name: str | None = None,
    executor: Executor | None = None,
) -> Callable[[Callable[..., Any]], type[FunctionWorker]]: ...


def job(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    tags: list[str] | None = None,
    unique: Any = None,
    replace: Any = None,
    meta: dict[str, Any] | None = None,
    name: str | None = None,
    executor: Executor | None = None,
) -> type[FunctionWorker] | Callable[[Callable[..., Any]], type[FunctionWorker]]:
    """Turn a plain function (async or sync) into a worker class.

    The function is called with the job's args as keyword arguments (plus ``job=`` when it has a
    parameter named ``job``). The returned class has ``new``/``enqueue``; the original function
    stays callable as ``Worker.func``.
    """

    def decorate(func: Callable[..., Any]) -> type[FunctionWorker]:
        wants_job = "job" in inspect.signature(func).parameters
        is_async = inspect.iscoroutinefunction(func)

        if is_async:

            async def process(self: Worker, job: Job) -> Any:
                extra = {"job": job} if wants_job else {}
                return await func(**job.args, **extra)

        else:

            def process(self: Worker, job: Job) -> Any:  # type: ignore[misc]
                extra = {"job": job} if wants_job else {}
                return func(**job.args, **extra)

        namespace: dict[str, Any] = {
            "process": process,
            "func": staticmethod(func),
            "__module__": func.__module__,
            "__qualname__": func.__qualname__,
            "__doc__": func.__doc__,
        }
        for key, value in (
            ("queue", queue),
            ("priority", priority),
            ("max_attempts", max_attempts),
            ("tags", tags),
            ("unique", unique),
            ("replace", replace),
            ("meta", meta),
            ("executor", executor),
        ):
            if value is not None:
                namespace[key] = value
        if name:
            namespace["name"] = name
        built = type(func.__name__, (FunctionWorker,), namespace)
        _check(built)
        return built

    return decorate(fn) if fn is not None else decorate
