"""The examples of docs/workflows.md, run as written against a node (the "your code" calls
stubbed): the order export, the nightly chain and the onboarding with its timer and message."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nodekit import row, wait_for, wait_state

from oban_py import Oban, workflows

PAGE = Path(__file__).parent.parent / "docs" / "workflows.md"
CALLS: list[tuple[str, Any]] = []


def examples() -> dict[str, str]:
    """The page's Python blocks whose first line is ``# example: <title>``, by title."""
    found = {}
    for block in re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S):
        first = block.splitlines()[0]
        if first.startswith("# example: "):
            found[first.removeprefix("# example: ")] = block
    return found


def stubs() -> dict[str, Any]:
    def record(name: str) -> Any:
        async def call(*args: Any) -> Any:
            CALLS.append((name, args))
            return {"export": ["row"] * 3, "extract": [1, 2, 3]}.get(name)

        return call

    names = ("open_export", "export", "send_report", "extract", "load")
    names += ("send_welcome", "send_nudge", "activate")
    namespace: dict[str, Any] = {name: record(name) for name in names}
    namespace["transform"] = lambda raw: [x * 10 for x in raw]
    namespace["__name__"] = "docs_workflows"
    return namespace


@pytest.fixture(scope="module")
def code() -> dict[str, Any]:
    namespace = stubs()
    for block in examples().values():
        exec(compile(block, str(PAGE), "exec"), namespace)
    return namespace


@pytest.fixture
async def oban(dsn: str) -> AsyncIterator[Oban]:
    CALLS.clear()
    async with Oban(dsn=dsn, queues={"default": 10}, peer=False, node="docs") as node:
        yield node


def test_the_page_has_its_three_examples() -> None:
    assert set(examples()) == {
        "order export (fan-out, fan-in, results read at the fan-in)",
        "nightly pipeline (a chain)",
        "onboarding (a timer, and a wait for a webhook)",
    }


async def _finished(oban: Oban, wid: str) -> workflows.Status:
    async def done() -> bool:
        return (await workflows.status(wid, oban=oban)).finished

    await wait_for(done, 30)
    return await workflows.status(wid, oban=oban)


async def test_the_order_export_fans_out_and_in(code: dict[str, Any], oban: Oban) -> None:
    wid = await code["export_orders"]([11, 12, 13])
    status = await _finished(oban, wid)
    assert status.counts == {"completed": 5}
    assert ("send_report", (9,)) in CALLS
    assert CALLS[0] == ("open_export", ())


async def test_the_nightly_chain_passes_results_along(code: dict[str, Any], oban: Oban) -> None:
    wid = await code["nightly"]("2026-12-01")
    await _finished(oban, wid)
    assert [name for name, _ in CALLS] == ["extract", "load"]
    assert CALLS[1] == ("load", ([10, 20, 30],))


async def test_onboarding_waits_for_the_webhook_and_the_timer(
    code: dict[str, Any], oban: Oban, conn: Any
) -> None:
    wid = await code["onboard"](5)
    # The webhook comes first; the welcome email may not have gone out yet: kept.
    await code["on_payment_webhook"](oban, wid, "pro")

    async def activated() -> bool:
        return ("activate", (5, "pro")) in CALLS

    await wait_for(activated)
    status = await workflows.status(wid, oban=oban)
    nudge = next(j for j in status.jobs if j["name"] == "nudge")
    assert (await wait_state(conn, nudge["id"], "scheduled"))["state"] == "scheduled"
    assert (await row(conn, nudge["id"]))["meta"]["delay"] == 86400.0
