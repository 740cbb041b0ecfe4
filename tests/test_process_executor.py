"""Process workers (``executor="process"``): jobs run in worker processes the node can kill.

Workers live at module level: a worker process imports them by module and class name. Each
writes its pid to a file named in its args, so a test can see which process ran it and that a
killed process is gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from nodekit import insert, row, wait_for, wait_state
from pydantic import BaseModel

from oban_py import Oban, telemetry
from oban_py.job.model import Job
from oban_py.job.returns import Record
from oban_py.middleware import AttemptOutcome, Middleware, ThreadNext, WorkNext
from oban_py.testing import perform_job
from oban_py.worker import Worker, worker

ROOT = Path(__file__).resolve().parent.parent


def _write_pid(path: str) -> None:
    Path(path).write_text(str(os.getpid()))


def _note_pid(job: Job) -> None:
    _write_pid(job.args["pid_file"])


@worker(name="Py.Proc.Cpu", executor="process")
class Cpu:
    def process(self, job: Job) -> Any:
        _note_pid(job)
        digest = b"x"
        for _ in range(job.args["rounds"]):
            digest = hashlib.sha256(digest).digest()
        return Record({"pid": os.getpid(), "digest": digest.hex()})


@worker(name="Py.Proc.Hangs", executor="process")
class Hangs:
    def timeout(self, job: Job) -> float:
        return 0.5

    def process(self, job: Job) -> None:
        _note_pid(job)
        while True:  # deaf to job.cancelled(): only a kill stops it
            time.sleep(0.05)


@worker(name="Py.Proc.NanTimeout", executor="process")
class NanTimeout:
    def timeout(self, job: Job) -> float:
        return math.nan

    def process(self, job: Job) -> None:
        time.sleep(0.3)


@worker(name="Py.Proc.Stuck", executor="process")
class Stuck:
    def process(self, job: Job) -> None:
        _note_pid(job)
        while True:  # no timeout, deaf to job.cancelled()
            time.sleep(0.05)


@worker(name="Py.Proc.Unpicklable", executor="process")
class Unpicklable:
    def process(self, job: Job) -> Any:
        return Record(threading.Lock())


@worker(name="Py.Proc.Raises", executor="process")
class Raises:
    def process(self, job: Job) -> None:
        raise ValueError(f"bad input {job.args['n']}")


@worker(name="Py.Proc.Dies", executor="process")
class Dies:
    def process(self, job: Job) -> None:
        os._exit(3)


@worker(name="Py.Proc.OomKilled", executor="process")
class OomKilled:
    def process(self, job: Job) -> None:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would


class PidFile(BaseModel):
    pid_file: str


@worker(name="Py.Proc.AsyncTyped", executor="process", args_model=PidFile)
class AsyncTyped:
    async def process(self, job: Job) -> None:
        await asyncio.sleep(0)
        _write_pid(job.typed_args.pid_file)


@worker(name="Py.Proc.Reports", executor="process")
class Reports:
    def process(self, job: Job) -> Record:
        time.sleep(0.3)  # the watcher listens first
        for step in range(1, 5):
            job.progress_sync(step / 4, note=f"step {step} of 4")
            time.sleep(0.15)
        return Record("reported")


@worker(name="Py.Proc.ReportsForever", executor="process")
class ReportsForever:
    def timeout(self, job: Job) -> float:
        return 0.5

    def process(self, job: Job) -> None:
        _note_pid(job)
        while True:  # a flood of reports up the pipe, deaf to job.cancelled()
            job.progress_sync(0.5, note="busy")


@worker(name="Py.Proc.Pid", executor="process")
class Pid:
    def process(self, job: Job) -> None:
        _note_pid(job)


def gone(pid: int) -> bool:
    # A killed worker is reaped by the forkserver; a zombie would still have a /proc entry.
    return not Path(f"/proc/{pid}").exists()


def status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"


async def wait_gone(pid: int) -> None:
    try:
        await wait_for(lambda: gone(pid), timeout=20)
    except AssertionError:
        raise AssertionError(f"process {pid} still there: {status(pid)}") from None


@pytest.fixture
def pid_file(tmp_path: Path) -> Path:
    return tmp_path / "pid"


def pid_in(path: Path) -> int:
    return int(path.read_text())


def written(path: Path) -> bool:
    return path.exists() and path.read_text() != ""


def node(dsn: str, limit: int = 1, **settings: Any) -> Oban:
    settings.setdefault("shutdown_grace", 0.2)
    # Rows are inserted by plain SQL, which sends no insert notification: poll often.
    settings.setdefault("poll_interval", 0.1)
    return Oban(dsn=dsn, queues={"cpu": limit}, peer=False, node="py-proc", **settings)


async def read_pid(path: Path) -> int:
    await wait_for(lambda: written(path))
    return pid_in(path)


async def test_a_cpu_job_runs_in_a_worker_process_and_completes(
    dsn: str, conn: Any, pid_file: Path
) -> None:
    job_id = await insert(
        conn, "Py.Proc.Cpu", {"rounds": 20_000, "pid_file": str(pid_file)}, queue="cpu"
    )
    async with node(dsn):
        got = await wait_state(conn, job_id, "completed", timeout=30)
    assert pid_in(pid_file) != os.getpid()
    assert got["errors"] == []
    assert got["meta"]["recorded"] is True


async def test_an_async_process_with_typed_args_runs_in_a_worker_process(
    dsn: str, conn: Any, pid_file: Path
) -> None:
    job_id = await insert(conn, "Py.Proc.AsyncTyped", {"pid_file": str(pid_file)}, queue="cpu")
    async with node(dsn):
        got = await wait_state(conn, job_id, "completed", "retryable", timeout=30)
    assert got["errors"] == []
    assert pid_in(pid_file) != os.getpid()


async def test_a_process_workers_progress_reaches_the_node_and_its_watchers(
    dsn: str, conn: Any
) -> None:
    events: list[dict[str, Any]] = []
    telemetry.attach(
        "test.proc.progress", "oban.job.progress", lambda _, __, meta: events.append(meta)
    )
    try:
        async with node(dsn) as oban:
            assert oban.progress is not None
            oban.progress.interval = 0.05
            job_id = await insert(conn, "Py.Proc.Reports", {}, queue="cpu")
            seen = [report async for report in oban.watch(job_id, timeout=30)]
            assert await oban.wait_for(job_id, timeout=5) == "reported"
            stored = await oban.get_job(job_id)
    finally:
        telemetry.detach("test.proc.progress")
    assert [(p.value, p.note, p.attempt, p.seq) for p in seen] == [
        (0.25, "step 1 of 4", 1, 1),
        (0.5, "step 2 of 4", 1, 2),
        (0.75, "step 3 of 4", 1, 3),
        (1.0, "step 4 of 4", 1, 4),
    ]
    assert stored is not None
    assert stored.last_progress == seen[-1]
    # Emitted in the node, where handlers are attached, with the node's job.
    assert [(e["id"], e["note"], e["seq"]) for e in events] == [
        (job_id, f"step {n} of 4", n) for n in range(1, 5)
    ]


async def test_a_process_job_flooding_progress_reports_is_still_killed_at_its_timeout(
    dsn: str, conn: Any, pid_file: Path
) -> None:
    async with node(dsn):
        job_id = await insert(
            conn, "Py.Proc.ReportsForever", {"pid_file": str(pid_file)}, queue="cpu"
        )
        got = await wait_state(conn, job_id, "retryable", timeout=30)
    assert got["errors"][0]["error"] == (
        "** (Oban.TimeoutError) Py.Proc.ReportsForever timed out after 500ms"
    )
    assert got["meta"]["progress"]["note"] == "busy"
    await wait_gone(pid_in(pid_file))


async def test_a_job_past_its_timeout_is_killed_and_the_next_runs_on_a_fresh_process(
    dsn: str, conn: Any, tmp_path: Path
) -> None:
    hung, fresh = tmp_path / "hung", tmp_path / "fresh"
    async with node(dsn, limit=1):
        hang_id = await insert(conn, "Py.Proc.Hangs", {"pid_file": str(hung)}, queue="cpu")
        got = await wait_state(conn, hang_id, "retryable", timeout=30)
        next_id = await insert(conn, "Py.Proc.Pid", {"pid_file": str(fresh)}, queue="cpu")
        await wait_state(conn, next_id, "completed", timeout=30)
    assert got["errors"][0]["error"] == (
        "** (Oban.TimeoutError) Py.Proc.Hangs timed out after 500ms"
    )
    killed = pid_in(hung)
    await wait_gone(killed)
    assert pid_in(fresh) != killed


async def test_a_nan_timeout_fails_the_attempt_and_never_spins_the_node(
    dsn: str, conn: Any
) -> None:
    # NaN once reached the deadline of the node's wait: the wait spun at 100% CPU until the
    # process ended, and the job completed.
    cpu = time.process_time()
    async with node(dsn):
        job_id = await insert(conn, "Py.Proc.NanTimeout", queue="cpu")
        got = await wait_state(conn, job_id, "completed", "retryable", timeout=30)
    assert got["state"] == "retryable"
    assert got["errors"][0]["error"].startswith(
        "** (ValueError) Py.Proc.NanTimeout.timeout(job) returned nan"
    )
    assert time.process_time() - cpu < 2


SLOW_IMPORT = """
import time
from oban_py.worker import worker

time.sleep(1.0)  # a heavy import: numpy, a model...

@worker(name="Py.Proc.SlowImport", executor="process")
class SlowImport:
    def timeout(self, job):
        return 0.5

    def process(self, job):
        time.sleep(0.1)
"""


async def test_importing_the_worker_in_a_fresh_process_does_not_count_against_its_timeout(
    dsn: str, conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "slow_import_worker.py").write_text(SLOW_IMPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("slow_import_worker")
    job_id = await insert(conn, "Py.Proc.SlowImport", queue="cpu")
    async with node(dsn):
        got = await wait_state(conn, job_id, "completed", "retryable", timeout=30)
    assert got["errors"] == []
    assert got["state"] == "completed"


async def test_a_cancel_kills_the_running_process(dsn: str, conn: Any, pid_file: Path) -> None:
    oban = node(dsn, limit=1)
    async with oban:
        job_id = await insert(conn, "Py.Proc.Stuck", {"pid_file": str(pid_file)}, queue="cpu")
        pid = await read_pid(pid_file)
        started = time.monotonic()
        await oban.cancel_job(job_id)
        await wait_gone(pid)
        took = time.monotonic() - started

        async def acked() -> bool:
            # cancel_job marks the row at once; the errors entry comes with the kill's ack.
            return bool((await row(conn, job_id))["errors"])

        await wait_for(acked)
        got = await row(conn, job_id)
    assert got["state"] == "cancelled"
    # Killed on the cancel signal, not after the producer's grace for cooperative workers.
    assert took < 5
    # Elixir's record of a pkill (compat_fixtures/jobs/cancelled_executing_pkill.json).
    assert got["cancelled_at"] is not None
    assert [e["error"] for e in got["errors"]] == [
        "** (Oban.PerformError) Py.Proc.Stuck failed with {:cancel, :shutdown}"
    ]


async def test_a_job_past_the_shutdown_grace_is_stopped_and_released(
    dsn: str, conn: Any, pid_file: Path
) -> None:
    job_id = await insert(conn, "Py.Proc.Stuck", {"pid_file": str(pid_file)}, queue="cpu")
    oban = node(dsn, limit=1, shutdown_grace=0.3)
    await oban.start()
    pid = await read_pid(pid_file)
    started = time.monotonic()
    await oban.stop()
    assert time.monotonic() - started < 5
    await wait_gone(pid)
    got = await row(conn, job_id)
    assert got["state"] == "available"
    assert got["attempt"] == 1
    assert got["errors"] == []


async def test_a_result_that_cannot_be_pickled_fails_the_attempt_with_a_clear_error(
    dsn: str, conn: Any
) -> None:
    job_id = await insert(conn, "Py.Proc.Unpicklable", queue="cpu")
    async with node(dsn):
        got = await wait_state(conn, job_id, "retryable", timeout=30)
    error = got["errors"][0]["error"]
    assert error.startswith("** (Oban.ProcessError) the result of job")
    assert "cannot be returned from its worker process" in error
    assert "lock" in error


async def test_an_exception_in_the_process_is_stored_with_its_own_frames(
    dsn: str, conn: Any
) -> None:
    job_id = await insert(conn, "Py.Proc.Raises", {"n": 7}, queue="cpu")
    async with node(dsn):
        got = await wait_state(conn, job_id, "retryable", timeout=30)
    error = got["errors"][0]["error"]
    assert error.startswith("** (ValueError) bad input 7")
    assert "test_process_executor.py" in error


async def test_a_process_that_dies_mid_job_fails_the_attempt_and_is_replaced(
    dsn: str, conn: Any, pid_file: Path
) -> None:
    async with node(dsn):
        dead_id = await insert(conn, "Py.Proc.Dies", queue="cpu")
        got = await wait_state(conn, dead_id, "retryable", timeout=30)
        oom_id = await insert(conn, "Py.Proc.OomKilled", queue="cpu")
        oom = await wait_state(conn, oom_id, "retryable", timeout=30)
        next_id = await insert(conn, "Py.Proc.Pid", {"pid_file": str(pid_file)}, queue="cpu")
        await wait_state(conn, next_id, "completed", timeout=30)
    assert got["errors"][0]["error"].startswith("** (Oban.ProcessError) the worker process")
    assert "exited with status 3" in got["errors"][0]["error"]
    assert oom["errors"][0]["error"].endswith("(Py.Proc.OomKilled) was killed by SIGKILL")


class Seen(Middleware):
    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str]] = []
        self.in_thread = 0

    async def work(self, job: Job, call_next: WorkNext) -> AttemptOutcome:
        outcome = await call_next()
        self.outcomes.append((job.worker, outcome.state))
        return outcome

    def work_in_thread(self, job: Job, call_next: ThreadNext) -> Any:
        self.in_thread += 1
        return call_next()


async def test_work_middleware_sees_the_outcomes_of_process_jobs(
    dsn: str, conn: Any, tmp_path: Path
) -> None:
    seen = Seen()
    oban = Oban(
        dsn=dsn,
        queues={"cpu": 1},
        peer=False,
        poll_interval=0.1,
        shutdown_grace=0.2,
        middleware=[seen],
    )
    async with oban:
        done = await insert(conn, "Py.Proc.Pid", {"pid_file": str(tmp_path / "p")}, queue="cpu")
        await wait_state(conn, done, "completed", timeout=30)
        hung = await insert(conn, "Py.Proc.Hangs", {"pid_file": str(tmp_path / "h")}, queue="cpu")
        await wait_state(conn, hung, "retryable", timeout=30)
    assert seen.outcomes == [("Py.Proc.Pid", "completed"), ("Py.Proc.Hangs", "retryable")]
    assert seen.in_thread == 0


async def test_processes_are_recycled_after_max_jobs(dsn: str, conn: Any, tmp_path: Path) -> None:
    pids = []
    async with node(dsn, limit=1, process_max_jobs=2):
        for n in range(4):
            path = tmp_path / f"pid{n}"
            job_id = await insert(conn, "Py.Proc.Pid", {"pid_file": str(path)}, queue="cpu")
            await wait_state(conn, job_id, "completed", timeout=30)
            pids.append(pid_in(path))
    assert pids[0] == pids[1]
    assert pids[2] == pids[3]
    assert pids[0] != pids[2]


async def test_processes_are_recycled_past_max_memory(dsn: str, conn: Any, tmp_path: Path) -> None:
    pids = []
    # Any Python process is past 1 MiB: every job gets a fresh process.
    async with node(dsn, limit=1, process_max_memory=1):
        for n in range(2):
            path = tmp_path / f"pid{n}"
            job_id = await insert(conn, "Py.Proc.Pid", {"pid_file": str(path)}, queue="cpu")
            await wait_state(conn, job_id, "completed", timeout=30)
            pids.append(pid_in(path))
    assert pids[0] != pids[1]


async def test_jobs_of_a_queue_run_in_as_many_processes_as_its_limit(
    dsn: str, conn: Any, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    telemetry.attach("proc-test", ["oban.job.stop"], lambda _e, _m, meta: seen.append(meta))
    try:
        async with node(dsn, limit=2):
            ids = [
                await insert(
                    conn,
                    "Py.Proc.Cpu",
                    {"rounds": 200_000, "pid_file": str(tmp_path / f"p{n}")},
                    queue="cpu",
                )
                for n in range(4)
            ]
            for job_id in ids:
                await wait_state(conn, job_id, "completed", timeout=60)
    finally:
        telemetry.detach("proc-test")
    pids = {pid_in(tmp_path / f"p{n}") for n in range(4)}
    assert len(pids) == 2
    assert all(isinstance(m["result"], Record) for m in seen)


async def test_a_queue_s_processes_setting_caps_its_worker_processes(
    dsn: str, conn: Any, tmp_path: Path
) -> None:
    oban = Oban(
        dsn=dsn,
        queues={"cpu": {"limit": 3, "processes": 1}},
        peer=False,
        poll_interval=0.1,
        shutdown_grace=0.2,
    )
    async with oban:
        ids = [
            await insert(conn, "Py.Proc.Pid", {"pid_file": str(tmp_path / f"p{n}")}, queue="cpu")
            for n in range(3)
        ]
        for job_id in ids:
            await wait_state(conn, job_id, "completed", timeout=30)
    assert len({pid_in(tmp_path / f"p{n}") for n in range(3)}) == 1


NODE_SCRIPT = """
import asyncio, os, sys, time
from oban_py import Oban
from oban_py.worker import worker

@worker(queue="cpu", executor="process")
class Stuck:
    def process(self, job):
        with open(job.args["pid_file"], "w") as f:
            f.write(str(os.getpid()))
        while True:
            time.sleep(0.05)

async def main():
    async with Oban(dsn=os.environ["DATABASE_URL"], queues={"cpu": 1}, peer=False) as oban:
        await Stuck.enqueue({"pid_file": sys.argv[1]})
        await asyncio.sleep(120)

if __name__ == "__main__":
    asyncio.run(main())
"""


async def test_worker_processes_die_with_a_node_killed_by_sigkill(
    dsn: str, tmp_path: Path, pid_file: Path
) -> None:
    script = tmp_path / "node_script.py"
    script.write_text(NODE_SCRIPT)
    node_process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(pid_file), env={**os.environ, "DATABASE_URL": dsn}
    )
    try:
        pid = await read_pid(pid_file)
    finally:
        node_process.kill()
        await node_process.wait()
    await wait_gone(pid)


def test_a_worker_in_a_script_s_main_module_runs_in_a_process(dsn: str) -> None:
    # The example of docs/processes.md, run as a user would: its worker lives in __main__.
    script = ROOT / "docs" / "examples" / "processes.py"
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "DATABASE_URL": dsn},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "completed 4 jobs" in done.stdout
    # What the worker processes printed is flushed when the stopping node lets them exit.
    assert done.stdout.count("primes below 50000") == 4


async def test_a_worker_no_process_can_import_fails_with_a_clear_error(dsn: str, conn: Any) -> None:
    @worker(name="Py.Proc.Local", executor="process")
    class Local:
        def process(self, job: Job) -> None: ...

    job_id = await insert(conn, "Py.Proc.Local", queue="cpu")
    async with node(dsn):
        got = await wait_state(conn, job_id, "retryable", timeout=30)
    error = got["errors"][0]["error"]
    assert error.startswith(f"** (Oban.ProcessError) job {job_id} (Py.Proc.Local) cannot be sent")
    assert "importable by module and class name" in error


async def test_perform_job_runs_a_process_worker_in_the_test_s_own_process(
    pid_file: Path,
) -> None:
    outcome = await perform_job(Pid, {"pid_file": str(pid_file)})
    assert outcome.state == "completed"
    assert pid_in(pid_file) == os.getpid()


def test_the_docs_page_shows_the_example_the_suite_runs() -> None:
    page = (ROOT / "docs" / "processes.md").read_text()
    assert (ROOT / "docs" / "examples" / "processes.py").read_text() in page


def test_the_executor_option_is_checked_at_definition() -> None:
    with pytest.raises(ValueError, match="executor must be one of"):

        @worker(executor="processes")  # type: ignore[arg-type]
        class Typo:
            def process(self, job: Job) -> None: ...

    assert Cpu.executor == "process"
    assert Worker.executor == "thread"
