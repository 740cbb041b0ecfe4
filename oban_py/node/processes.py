"""The worker processes ``executor="process"`` workers run in: one small pool per queue.

A plain ``def process`` in a thread shares the node's GIL and cannot be stopped. A job of a
process worker runs in a child process instead, so CPU-bound jobs use every core, and the
node can end a job for real: past its ``timeout`` (the child is killed and replaced, the
attempt fails with Elixir's timeout text), on a cancel (pkill), and past the shutdown grace.

Why not ``concurrent.futures.ProcessPoolExecutor``: it cannot kill the process of one job (a
hung job holds its worker until the whole pool is torn down, and a killed worker breaks the
pool for every other job), and it neither recycles workers after N jobs nor on memory growth.
So each child here is a ``multiprocessing.Process`` with a pipe of its own: the parent sends
one pickled job, waits on the pipe and the child's sentinel from the event loop, and is free
to kill that one child at any time.

Start method: ``forkserver`` where the platform has it, else ``spawn``. ``fork`` would copy a
parent that runs an event loop, a heartbeat thread and pool threads, with whatever locks those
held at that instant (Python 3.12 warns about forking a threaded process). A forkserver is a
fresh single-threaded process; it imports this module (and the main module, as ``spawn``
does) once, and forks each child from itself, so a child starts in milliseconds instead of
re-importing the library. Either way a child re-imports the worker's module: a process worker
must be importable by its module and class name (``module.Class``). One defined in the main
script works (the child imports the script as ``__mp_main__``, under its ``if __name__ ==
"__main__"`` guard), one defined inside a function does not and fails with a clear error.

The wire: ``(worker class, job)`` pickled down (the class by reference); up, ``STARTED``, the
job's progress reports (``PROGRESS`` and the pickled report, each handed to the node's progress
writer as a thread's would be), then one reply: ``("returned", value, peak_rss_kib)`` or
``("raised", text, pickled exception or None, peak_rss_kib)`` or ``("unsendable", text,
peak_rss_kib)`` when the result cannot be pickled.
A job whose payload cannot be pickled never leaves the node; a child that dies mid-job (a
segfault, ``os._exit``, the OOM killer) fails the attempt with its exit status.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import multiprocessing
import os
import pickle
import resource
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

import structlog

from oban_py.job import errors
from oban_py.job.model import Job
from oban_py.job.progress import Progress

log = structlog.get_logger("oban.processes")

#: How often a waiting attempt checks for a pkill, so the child is killed at once rather than
#: after the grace the producer gives cooperative workers (a worker process cannot see
#: ``job.cancelled()``: it is stopped by a kill, as Elixir stops a job's process).
KILL_POLL = 0.05
#: What a child sends once the job is loaded (its module imported) and ``process`` begins: the
#: timeout counts from here, as Elixir's counts from ``perform``. Never the start of a pickle.
STARTED = b"\x00"
#: What starts a progress report a child sends up (a reply is a pickle: it starts with 0x80).
PROGRESS = b"\x01"
#: How long a fresh process may take to load a job with a timeout (import its worker's module).
LOAD_TIMEOUT = 60.0
#: How long a child may take to exit after its pipe closed before it is killed.
EXIT_GRACE = 2.0


class ProcessError(Exception):
    """A job or its outcome could not cross the process boundary, or its process died."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        #: the errors entry text, Elixir-style
        self.oban_text = f"** (Oban.ProcessError) {message}"


class RemoteError(Exception):
    """An exception raised in a worker process that could not be rebuilt in the node."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.oban_text = text


class Executor(Protocol):
    """What an attempt needs to run a job in a worker process."""

    async def run(
        self,
        worker: type[Any],
        job: Job,
        seconds: float | None,
        killed: Callable[[], bool],
    ) -> Any:
        """``worker().process(job)`` in a worker process: its return value, or its exception.

        Raises ``TimeoutError`` (with ``oban_timeout``) past ``seconds``, ``ProcessError``
        when the job or result cannot cross, and kills the process as soon as ``killed()``
        holds or the calling task is cancelled.
        """
        ...


def start_method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


_context: BaseContext | None = None


def _ctx() -> BaseContext:
    global _context
    if _context is None:
        method = start_method()
        if method == "forkserver":
            # The forkserver imports these once; each child is forked from it ready to run.
            # ``__main__`` is the standard library's default and keeps scripts' workers found.
            multiprocessing.set_forkserver_preload(["__main__", __name__])
        _context = multiprocessing.get_context(method)
    return _context


# -- the child ------------------------------------------------------------------------------------


def _watch_parent(life: Connection) -> None:
    # The node's end of ``life`` is never written: readable means the node is gone (even
    # killed with SIGKILL), and a child must not run on without anyone to take its result.
    with contextlib.suppress(Exception):
        life.recv_bytes()
    os._exit(1)


def _peak_rss_kib() -> int:
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes there, KiB on Linux


#: Held by every send up a child's pipe: a worker may report progress from threads of its own.
_sending = threading.Lock()


class _Forward:
    """A worker process's progress sink: each report goes up the job's pipe to the node. It
    closes before the job's reply is sent, so every report of a job reaches the node before
    its reply, and a thread the job left behind reports into nothing."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.open = True

    def report(self, job: Any, progress: Progress) -> None:
        # Progress is advisory: a report that cannot be sent never fails the job.
        with contextlib.suppress(Exception):
            message = PROGRESS + pickle.dumps(progress)
            with _sending:
                if self.open:
                    self.conn.send_bytes(message)

    def report_threadsafe(self, job: Any, progress: Progress) -> None:
        self.report(job, progress)

    async def settle(self, job: Any) -> None:
        """Nothing is held here: the node's writer settles the job's reports."""

    def close(self) -> None:
        with _sending:
            self.open = False


def child_main(conn: Connection, life: Connection) -> None:
    """A worker process: run the jobs the node sends, one at a time, until the pipe closes."""
    # Ctrl-C reaches the whole process group, and systemd or a container runtime may send
    # SIGTERM to every process: the node decides how its jobs end (its shutdown grace).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(life,), daemon=True).start()
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return
        reply = _work(payload, conn)
        with _sending:
            conn.send_bytes(reply)


def _work(payload: bytes, conn: Connection) -> bytes:
    try:
        worker, job = pickle.loads(payload)
    except BaseException as error:
        message = (
            "the job cannot be loaded in its worker process (process workers must be "
            f"importable by module and class name): {_described(error)}"
        )
        return pickle.dumps(("boundary", message, _peak_rss_kib()))
    conn.send_bytes(STARTED)
    forward = _Forward(conn)
    job._progress_sink = forward
    try:
        if worker.args_model is not None:
            worker.build_args(job)
        result = worker().process(job)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
    except BaseException as error:
        forward.close()
        text = errors.format_exception(error)
        try:
            raised: bytes | None = pickle.dumps(error)
        except BaseException:
            raised = None
        return pickle.dumps(("raised", text, raised, _peak_rss_kib()))
    forward.close()
    try:
        return pickle.dumps(("returned", result, _peak_rss_kib()))
    except BaseException as error:
        message = (
            f"the result of job {job.id} ({job.worker}) cannot be returned from its worker "
            f"process: {_described(error)}"
        )
        return pickle.dumps(("boundary", message, _peak_rss_kib()))


def _described(error: BaseException) -> str:
    return f"{type(error).__name__}: {errors.safe_str(error)}"


async def _awaited(result: Any) -> Any:
    return await result


# -- the node's side ----------------------------------------------------------------------------


class _Child:
    __slots__ = ("conn", "jobs", "life", "process")

    def __init__(self, process: BaseProcess, conn: Connection, life: Connection) -> None:
        self.process = process
        self.conn = conn
        self.life = life
        self.jobs = 0

    @property
    def pid(self) -> int:
        return self.process.pid or 0


_live: set[_Child] = set()


def _spawn() -> _Child:
    ctx = _ctx()
    ours, theirs = ctx.Pipe(duplex=True)
    life_read, life_write = ctx.Pipe(duplex=False)
    # Not a daemon: a daemonic process may not start processes of its own, and a CPU worker
    # may well want to (a multiprocessing pool, joblib). ``_kill_all`` at exit stands in.
    process = ctx.Process(  # type: ignore[attr-defined]
        target=child_main, args=(theirs, life_read), name="oban-worker-process", daemon=False
    )
    process.start()
    theirs.close()
    life_read.close()
    child = _Child(process, ours, life_write)
    _live.add(child)
    return child


def _kill(child: _Child) -> None:
    _live.discard(child)
    with contextlib.suppress(Exception):
        child.process.kill()
    _close(child)
    # Reaped off the loop: the forkserver reports the exit status over a pipe.
    threading.Thread(target=_reap, args=(child.process, 5.0), daemon=True).start()


def _close(child: _Child) -> None:
    for conn in (child.conn, child.life):
        with contextlib.suppress(Exception):
            conn.close()


def _reap(process: BaseProcess, timeout: float) -> None:
    with contextlib.suppress(Exception):
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join(timeout)


def _retire(child: _Child) -> None:
    # Closing the job pipe ends the child's loop and it exits normally (flushing what it
    # printed); ``life`` stays open until then, or its watcher would cut that short.
    _live.discard(child)
    with contextlib.suppress(Exception):
        child.conn.close()

    def wait() -> None:
        with contextlib.suppress(Exception):
            child.process.join(EXIT_GRACE)
        _reap(child.process, EXIT_GRACE)
        _close(child)

    threading.Thread(target=wait, daemon=True).start()


@atexit.register
def _kill_all() -> None:
    # Runs before multiprocessing's own exit handler (registered earlier), which would
    # otherwise wait for our non-daemonic children forever.
    for child in list(_live):
        with contextlib.suppress(Exception):
            child.process.kill()
        _close(child)
    _live.clear()


async def _exit_text(child: _Child, job: Job) -> str:
    # Its pipe closed: the exit status follows at once, read off the loop all the same.
    with contextlib.suppress(Exception):
        await asyncio.to_thread(child.process.join, 1.0)
    code = child.process.exitcode
    if code is None:
        how = "closed its pipe"
    elif code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    return f"the worker process (pid {child.pid}) running job {job.id} ({job.worker}) {how}"


class ProcessPool:
    """The worker processes of one queue: at most ``size()`` of them, started on demand."""

    def __init__(
        self,
        queue: str,
        size: Callable[[], int],
        *,
        max_jobs: int | None = None,
        max_memory_mib: int | None = None,
    ) -> None:
        self.queue = queue
        self._size = size
        self.max_jobs = max_jobs
        self.max_memory_kib = None if max_memory_mib is None else max_memory_mib * 1024
        self._idle: list[_Child] = []
        self._taken = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def run(
        self,
        worker: type[Any],
        job: Job,
        seconds: float | None,
        killed: Callable[[], bool],
    ) -> Any:
        payload = _payload(worker, job)
        child = await self._acquire()
        reply: tuple[Any, ...] | None = None
        try:
            reply = await self._exchange(child, payload, job, seconds, killed)
        finally:
            # No reply (a timeout, a kill, a cancel, a dead child): the process goes with it.
            self._release(child, reply)
        return _result(reply)

    # -- slots ------------------------------------------------------------------------------

    async def _acquire(self) -> _Child:
        while True:
            if self._closed:
                raise ProcessError(f"the worker processes of queue {self.queue} are closed")
            while self._idle:
                child = self._idle.pop()
                if child.process.is_alive():
                    self._taken += 1
                    return child
                _kill(child)
            if self._taken < max(1, self._size()):
                self._taken += 1
                try:
                    return await _started()
                except BaseException:
                    self._taken -= 1
                    self._wake_one()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _release(self, child: _Child, reply: tuple[Any, ...] | None) -> None:
        self._taken -= 1
        if reply is None:
            _kill(child)
        elif self._closed or self._worn(child, reply[-1]):
            _retire(child)
        else:
            self._idle.append(child)
        self._wake_one()

    def _worn(self, child: _Child, peak_kib: Any) -> bool:
        # Celery's max_tasks_per_child and max_memory_per_child (peak resident set).
        if self.max_jobs is not None and child.jobs >= self.max_jobs:
            return True
        limit = self.max_memory_kib
        return limit is not None and isinstance(peak_kib, int) and peak_kib > limit

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- one job ----------------------------------------------------------------------------

    async def _exchange(
        self,
        child: _Child,
        payload: bytes,
        job: Job,
        seconds: float | None,
        killed: Callable[[], bool],
    ) -> tuple[Any, ...]:
        child.jobs += 1
        try:
            child.conn.send_bytes(payload)
        except OSError:
            raise ProcessError(await _exit_text(child, job)) from None
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future[None]] = []

        def wake() -> None:
            if waiting and not waiting[0].done():
                waiting[0].set_result(None)

        fds = (child.conn.fileno(), child.process.sentinel)
        for fd in fds:
            loop.add_reader(fd, wake)
        # ``process`` gets the whole timeout from STARTED on. Loading the job (a fresh process
        # imports the worker's module: numpy, a model...) is not the job's time, but a job
        # with a timeout cannot hang there for ever either. A free process is not waited for
        # under either.
        loading = seconds is not None
        deadline = None if seconds is None else time.monotonic() + max(seconds, LOAD_TIMEOUT)
        try:
            while True:
                try:
                    message = child.conn.recv_bytes() if child.conn.poll() else None
                except (EOFError, OSError):
                    raise ProcessError(await _exit_text(child, job)) from None
                if message == STARTED:
                    loading = False
                    deadline = None if seconds is None else time.monotonic() + seconds
                    continue
                if message is not None and message[:1] == PROGRESS:
                    _forwarded(message, job)
                    # A job reporting in a tight loop must neither hold the event loop nor
                    # escape its timeout or a kill: both are checked below.
                    await asyncio.sleep(0)
                elif message is not None:
                    return _loaded(message, job)
                else:
                    if not child.process.is_alive():
                        raise ProcessError(await _exit_text(child, job))
                    ready = loop.create_future()
                    waiting[:] = [ready]
                    wait = KILL_POLL
                    if deadline is not None:
                        wait = min(wait, max(0.0, deadline - time.monotonic()))
                    await asyncio.wait([ready], timeout=wait)
                    if ready.done():
                        continue
                if killed():
                    raise ProcessError(f"job {job.id} ({job.worker}) was killed by a cancel")
                if deadline is not None and time.monotonic() >= deadline:
                    job._cancel("timeout")
                    if loading:
                        raise ProcessError(
                            f"job {job.id} ({job.worker}) was not loaded in its worker process"
                            f" within {LOAD_TIMEOUT:g}s (importing the worker's module)"
                        )
                    error = TimeoutError(f"timed out after {seconds}s")
                    error.oban_timeout = seconds  # type: ignore[attr-defined]
                    raise error
        finally:
            for fd in fds:
                loop.remove_reader(fd)

    async def close(self) -> None:
        """Let the idle processes exit; those still running a job are ended by their attempt."""
        self._closed = True
        idle, self._idle = self._idle, []
        for child in idle:
            _retire(child)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


async def _started() -> _Child:
    # Off the loop: the first start also starts the forkserver. A start the caller stops
    # waiting for still completes; its process is let go rather than leaked.
    spawning = asyncio.ensure_future(asyncio.to_thread(_spawn))
    try:
        return await asyncio.shield(spawning)
    except asyncio.CancelledError:
        spawning.add_done_callback(_let_go)
        raise


def _let_go(spawning: asyncio.Future[_Child]) -> None:
    if not spawning.cancelled() and spawning.exception() is None:
        _retire(spawning.result())


def _payload(worker: type[Any], job: Job) -> bytes:
    sent = job.model_copy()
    # Typed args are built again in the child: the model need not pickle.
    sent._typed_args = None
    try:
        return pickle.dumps((worker, sent))
    except Exception as error:
        raise ProcessError(
            f"job {job.id} ({job.worker}) cannot be sent to a worker process (process workers "
            f"must be importable by module and class name): {_described(error)}"
        ) from None


def _forwarded(message: bytes, job: Job) -> None:
    try:
        report = pickle.loads(message[1:])
    except Exception as error:
        log.warning("progress from a worker process not read", job_id=job.id, error=repr(error))
        return
    if isinstance(report, Progress):
        job._forwarded(report)


def _loaded(message: bytes, job: Job) -> tuple[Any, ...]:
    try:
        reply: tuple[Any, ...] = pickle.loads(message)
    except Exception as error:
        # Pickled in the child but not loadable here (a class only the child has): the
        # process itself is fine and is kept.
        text = (
            f"the result of job {job.id} ({job.worker}) cannot be read in the node: "
            f"{_described(error)}"
        )
        return ("boundary", text, 0)
    return reply


def _result(reply: tuple[Any, ...] | None) -> Any:
    assert reply is not None
    kind = reply[0]
    if kind == "returned":
        return reply[1]
    if kind == "raised":
        text, raised = reply[1], reply[2]
        error: BaseException | None = None
        if raised is not None:
            # An exception whose __init__ takes other arguments than its args cannot be rebuilt.
            with contextlib.suppress(BaseException):
                error = pickle.loads(raised)
        # Only an Exception is rebuilt: a child's SystemExit or CancelledError must not pass
        # for the node's own in the attempt.
        if not isinstance(error, Exception):
            raise RemoteError(text)
        with contextlib.suppress(Exception):
            error.oban_text = text  # type: ignore[attr-defined]
        raise error
    raise ProcessError(str(reply[1]))


class WorkerProcesses:
    """The node's process pools, one per queue that runs process workers, made on first use."""

    def __init__(
        self,
        size_of: Callable[[str], int],
        *,
        max_jobs: int | None = None,
        max_memory_mib: int | None = None,
    ) -> None:
        self._size_of = size_of
        self.max_jobs = max_jobs
        self.max_memory_mib = max_memory_mib
        self.pools: dict[str, ProcessPool] = {}

    def pool(self, queue: str) -> ProcessPool:
        pool = self.pools.get(queue)
        if pool is None:
            pool = ProcessPool(
                queue,
                lambda: self._size_of(queue),
                max_jobs=self.max_jobs,
                max_memory_mib=self.max_memory_mib,
            )
            self.pools[queue] = pool
        return pool

    async def run(
        self,
        worker: type[Any],
        job: Job,
        seconds: float | None,
        killed: Callable[[], bool],
    ) -> Any:
        return await self.pool(job.queue).run(worker, job, seconds, killed)

    async def close_queue(self, queue: str) -> None:
        pool = self.pools.pop(queue, None)
        if pool is not None:
            await pool.close()

    async def close(self) -> None:
        for queue in list(self.pools):
            await self.close_queue(queue)
