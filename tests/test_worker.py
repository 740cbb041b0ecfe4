"""Workers: class, decorator and function workers, typed args, and the name registry."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from oban_py.job.errors import InvalidArgs, UnknownWorker
from oban_py.job.model import Job
from oban_py.worker import FunctionWorker, Worker, job, lookup, register, resolve, worker


class Mailer(Worker):
    queue = "mailers"
    max_attempts = 5
    tags = ["Mail"]

    def process(self, job: Job) -> str:
        return f"sent to {job.args['to']}"


class Greeting(BaseModel):
    name: str
    times: int = 1


class Greeter(Worker):
    args_model = Greeting

    async def process(self, job: Job) -> str:
        args: Greeting = job.typed_args
        return " ".join([f"hi {args.name}"] * args.times)


def test_a_worker_is_named_module_dot_class_and_registered() -> None:
    assert Mailer.__oban_name__ == f"{__name__}.Mailer"
    assert resolve(f"{__name__}.Mailer") is Mailer


def test_new_builds_a_job_with_the_worker_defaults_and_overrides() -> None:
    job = Mailer.new({"to": "a@b.c"})
    assert (job.worker, job.queue, job.max_attempts, job.tags) == (
        f"{__name__}.Mailer",
        "mailers",
        5,
        ["mail"],
    )
    assert Mailer.new({"to": "x"}, queue="urgent", priority=2).queue == "urgent"
    assert Mailer.new({"to": "x"}, schedule_in=30).state == "scheduled"


def test_new_rejects_unknown_options() -> None:
    with pytest.raises(TypeError, match="unknown job option"):
        Mailer.new({}, queues="x")


def test_sync_worker_processes_a_job() -> None:
    assert Mailer().process(Mailer.new({"to": "z"})) == "sent to z"


def test_decorated_class_can_serve_an_elixir_name() -> None:
    @worker(queue="mailers", name="MyApp.Workers.Mailer", priority=1)
    class ElixirNamed:
        async def process(self, job: Job) -> int:
            return 1

    assert ElixirNamed.__oban_name__ == "MyApp.Workers.Mailer"
    assert resolve("MyApp.Workers.Mailer") is ElixirNamed
    built = ElixirNamed.new({"id": 1})
    assert (built.worker, built.queue, built.priority) == ("MyApp.Workers.Mailer", "mailers", 1)
    assert issubclass(ElixirNamed, Worker)
    assert asyncio.run(ElixirNamed().process(built)) == 1


def test_decorator_validates_options_at_definition() -> None:
    with pytest.raises(ValidationError, match="priority"):

        @worker(priority=12)
        class Bad:
            def process(self, job: Job) -> None:
                return None


def test_decorator_requires_process() -> None:
    with pytest.raises(TypeError, match="process"):

        @worker(queue="q")
        class NoProcess:
            pass


def test_typed_args_are_validated_on_new_and_stored_as_json() -> None:
    assert Greeter.new({"name": "ann", "times": "2"}).args == {"name": "ann", "times": 2}
    assert Greeter.new(Greeting(name="bob")).args == {"name": "bob", "times": 1}
    with pytest.raises(InvalidArgs, match=rf"{__name__}.Greeter args do not match Greeting"):
        Greeter.new({"times": 1})


def test_build_args_gives_process_the_model() -> None:
    job = Job.from_row({"id": 1, "worker": Greeter.__oban_name__, "args": {"name": "cy"}})
    model = Greeter.build_args(job)
    assert model == Greeting(name="cy")
    assert asyncio.run(Greeter().process(job)) == "hi cy"


def test_build_args_raises_a_clear_error_for_stored_args_that_fail_the_model() -> None:
    job = Job.from_row({"id": 1, "worker": Greeter.__oban_name__, "args": {"times": "many"}})
    with pytest.raises(InvalidArgs, match="args do not match Greeting") as caught:
        Greeter.build_args(job)
    assert "name" in str(caught.value)
    assert "times" in str(caught.value)


def test_build_args_without_a_model_is_the_dict() -> None:
    job = Mailer.new({"to": "q"})
    assert Mailer.build_args(job) == {"to": "q"}
    assert job.typed_args == {"to": "q"}


def test_sync_function_worker_gets_args_as_keywords() -> None:
    @job(queue="fn")
    def add(a: int, b: int) -> int:
        return a + b

    built = add.new({"a": 1, "b": 2})
    assert (built.worker, built.queue) == (f"{__name__}.{add.__qualname__}", "fn")
    assert add().process(built) == 3
    assert add.func(2, 2) == 4
    assert resolve(add.__oban_name__) is add


def test_async_function_worker_may_ask_for_the_job() -> None:
    @job(name="Py.Echo")
    async def echo(text: str, job: Job) -> tuple[str, str]:
        return text, job.worker

    assert inspect.iscoroutinefunction(echo.process)
    assert asyncio.run(echo().process(echo.new({"text": "hi"}))) == ("hi", "Py.Echo")


def test_the_package_ships_its_types() -> None:
    # Without the marker a user's type checker treats every oban_py import as Any.
    import oban_py

    assert (Path(oban_py.__file__).parent / "py.typed").is_file()


def test_a_function_worker_is_a_function_worker_class_keeping_its_function() -> None:
    @job
    def ping() -> str:
        return "pong"

    assert issubclass(ping, FunctionWorker)
    assert ping.func() == "pong"
    assert ping().process(ping.new()) == "pong"
    # The base is no worker of its own: nothing registers under its name.
    assert lookup(FunctionWorker.__oban_name__) is None


def test_unknown_worker_names_itself() -> None:
    with pytest.raises(UnknownWorker) as caught:
        resolve("MyApp.Workers.Missing")
    assert str(caught.value) == "unknown worker: MyApp.Workers.Missing"


def test_default_named_worker_is_imported_on_demand() -> None:
    from oban_py.worker import _registry

    _registry.pop(f"{__name__}.Mailer")
    assert resolve(f"{__name__}.Mailer") is Mailer


def test_a_non_worker_importable_name_is_unknown() -> None:
    with pytest.raises(UnknownWorker):
        resolve("json.JSONDecoder")


def test_a_module_that_registers_its_worker_when_imported_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a Django @task does: the name is a plain function's, its worker registered on import.
    (tmp_path / "registers_on_import.py").write_text(
        "from oban_py.worker import Worker, register\n"
        "def send(): pass\n"
        "class SendWorker(Worker):\n"
        "    name = 'registers_on_import.send'\n"
        "    def process(self, job): return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = resolve("registers_on_import.send")
    assert found.__name__ == "SendWorker"


def test_register_aliases_a_worker_under_another_name() -> None:
    register(Mailer, "Legacy.Mailer")
    assert resolve("Legacy.Mailer") is Mailer


def test_timeout_defaults_to_none() -> None:
    assert Mailer().timeout(Mailer.new({})) is None


def test_a_name_that_imports_no_worker_is_not_searched_for_again_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    searched: list[str] = []
    real = importlib.import_module

    def counting(name: str, *args: Any) -> Any:
        searched.append(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", counting)
    for _ in range(3):
        with pytest.raises(UnknownWorker):
            resolve("no_such_package_here.Worker")
    assert searched == ["no_such_package_here"], "one search, then the miss is remembered"
