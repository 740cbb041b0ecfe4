"""The dashboard's cron page and nodes page over HTTP, fed the payloads real nodes publish.

Elixir's payloads are the captured ones in compat_fixtures/oban_met; Python's are built by the
node's own publishers (``cluster.cronitor.entry``, a producer's check-in shape). The browser
tests (test_web_browser.py) show both pages live next to a running node.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st
from oban_py_ext.web import create_app
from oban_py_ext.web.crons import CronWatch, next_run, zone
from oban_py_ext.web.dashboard import SECURITY_HEADERS
from oban_py_ext.web.fleet import HISTORY
from starlette.testclient import TestClient

from oban_py import notifier
from oban_py.cluster.cronitor import entry
from oban_py.crontab import CronEntry

FIXTURES = Path(__file__).resolve().parent.parent.parent / "compat_fixtures"


def fixture(channel: str) -> dict[str, Any]:
    notes = json.loads((FIXTURES / "oban_met" / "notifications.json").read_text())
    payload: dict[str, Any] = next(n for n in notes if n["channel"] == channel)["payload"]
    return payload


def publish(dsn: str, channel: str, payload: dict[str, Any]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        notifier.publish_sync(conn, "public", channel, [payload])


def insert_job(dsn: str, worker: str, meta: dict[str, Any], state: str = "completed") -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args, meta, state, attempted_at) "
            "VALUES ('default', %s, '{}', %s, %s, timezone('UTC', now())) RETURNING id",
            (worker, json.dumps(meta), state),
        ).fetchone()
    assert row is not None
    return int(row[0])


def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        threading.Event().wait(0.05)


WEEKLY = CronEntry("0 9 * * MON", "MyApp.Weekly", args={"n": 1}, timezone="America/New_York")


def test_the_cron_page_shows_each_entry_with_its_last_run_next_run_and_recent_jobs(
    dsn: str,
) -> None:
    # An Elixir node's crontab as captured (its entry carries no name) and a Python node's.
    elixir = fixture("public.oban_cronitor")
    python = {"crontab": [entry(WEEKLY)], "name": "Oban", "node": "py-node-1"}
    elixir_meta = {"cron": True, "cron_expr": "* * * * *", "cron_name": "47317141"}
    elixir_ids = [insert_job(dsn, "Interop.NoopWorker", elixir_meta) for _ in range(3)]
    insert_job(dsn, "Interop.NoopWorker", {})  # not a cron job of that worker
    insert_job(dsn, "Other.Worker", elixir_meta)  # another worker's cron job, same expression
    weekly_meta = {"cron": True, "cron_name": WEEKLY.name, "cron_tz": "America/New_York"}
    weekly_ids = [insert_job(dsn, WEEKLY.worker, weekly_meta) for _ in range(HISTORY + 2)]
    running = insert_job(dsn, WEEKLY.worker, weekly_meta, state="executing")

    app = create_app(dsn=dsn, refresh_interval=0.1)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        web.get("/crons")  # starts listening
        publish(dsn, "cronitor", elixir)
        publish(dsn, "cronitor", python)
        until(lambda: len(app.state.dashboard.crontabs.entries()) == 2)
        html = web.get("/crons").text

    rows = html.split("<tr data-worker=")[1:]
    assert len(rows) == 2
    noop, weekly = sorted(rows, key=lambda r: "Weekly" in r)
    assert '"Interop.NoopWorker" data-expr="* * * * *"' in noop
    assert [f'href="/jobs/{i}"' in noop for i in reversed(elixir_ids)] == [True] * 3
    assert noop.count('href="/jobs/') == 3
    assert "elixir-node-1" in noop
    assert "Etc/UTC" in noop
    # The newest job is the last run; only the newest HISTORY jobs are listed.
    assert 'class="last-run"><span class="pill state-executing">executing' in weekly
    assert weekly.count('href="/jobs/') == HISTORY
    assert f'href="/jobs/{running}"' in weekly
    assert f'href="/jobs/{weekly_ids[0]}"' not in weekly
    assert f"({WEEKLY.name})" in weekly
    assert "America/New_York" in weekly
    expected = next_run("0 9 * * MON", zone("America/New_York"))
    assert expected is not None
    assert expected.strftime("%Y-%m-%d %H:%M:%S UTC") in weekly
    assert "/crons" in html
    assert "/nodes" in html


def test_next_run_follows_the_expression_in_its_timezone() -> None:
    now = datetime(2026, 12, 4, 10, 30, 15, tzinfo=UTC)  # a Friday
    assert next_run("* * * * *", zone(None), now) == datetime(2026, 12, 4, 10, 31, tzinfo=UTC)
    assert next_run("*/15 * * * *", zone(None), now) == datetime(2026, 12, 4, 10, 45, tzinfo=UTC)
    # 09:00 in New York on Monday is 14:00 UTC in winter.
    monday = next_run("0 9 * * MON", zone("America/New_York"), now)
    assert monday == datetime(2026, 12, 7, 14, 0, tzinfo=UTC)
    # Day of month AND weekday, as Elixir: the next Friday the 13th.
    assert next_run("0 0 13 * FRI", zone(None), now) == datetime(2027, 8, 13, tzinfo=UTC)
    assert next_run("0 0 29 2 *", zone(None), now) == datetime(2028, 2, 29, tzinfo=UTC)
    # 02:30 does not exist in New York on 14 March 2027 (clocks go 02:00 -> 03:00).
    spring = datetime(2027, 3, 13, 12, 0, tzinfo=UTC)
    after_gap = next_run("30 2 * * *", zone("America/New_York"), spring)
    assert after_gap == datetime(2027, 3, 15, 6, 30, tzinfo=UTC)
    for never in ("@reboot", "not cron", "0-999999999 * * * *", "61 * * * *"):
        assert next_run(never, zone(None), now) is None
    assert zone("../../etc/passwd").key == "Etc/UTC"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=40))
def test_any_published_expression_or_timezone_yields_a_time_or_none(expr: str, tz: str) -> None:
    started = time.monotonic()
    moment = next_run(expr, zone(tz))
    assert moment is None or moment > datetime.now(UTC)
    assert time.monotonic() - started < 1.0


def test_malformed_crontabs_are_ignored() -> None:
    watch = CronWatch()
    for payload in (
        {"crontab": "x", "node": "n"},
        {"crontab": [["* * * * *", "W", {}]], "node": 5},
        {"crontab": [None, ["* * * * *"], [1, "W", {}], ["* * * * *", "W", []]], "node": "n"},
        {"crontab": [["* * * * *", "W", {"name": 7}]], "node": "m"},
    ):
        watch.heard(payload)
    (only,) = watch.entries()
    assert (only.worker, only.name, only.nodes) == ("W", None, ["m"])


def python_check(node: str, queue: str, limit: int, running: list[int]) -> dict[str, Any]:
    """A check-in in the shape a Python producer gossips (no shutdown_started_at key)."""
    return {
        "limit": limit,
        "name": "Oban",
        "node": node,
        "paused": False,
        "queue": queue,
        "refresh_interval": 60000,
        "running": running,
        "started_at": "2026-12-02T01:00:00.000000Z",
        "updated_at": "2026-12-02T01:00:01.000000Z",
        "uuid": "0f6b2c1e-2f1a-4d4e-9a51-3b0b5a4b8c01",
    }


def test_the_nodes_page_shows_each_node_its_queues_language_leader_and_uptime(
    dsn: str,
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_peers (name, node, started_at, expires_at) VALUES "
            "('Oban', 'elixir-node-1', now(), timezone('UTC', now()) + interval '30 s'),"
            "('Oban.py', 'py-node-1', now(), timezone('UTC', now()) + interval '30 s'),"
            "('Other.py', 'gone-node', now(), timezone('UTC', now()) - interval '1 s')"
        )
    app = create_app(dsn=dsn, refresh_interval=0.1)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        web.get("/nodes")
        publish(dsn, "gossip", fixture("public.oban_gossip"))
        checks = [
            python_check("py-node-1", "mailers", 5, [1, 2]),
            python_check("py-node-1", "media", 2, []),
        ]
        publish(dsn, "gossip", {"checks": checks})
        until(lambda: len(app.state.dashboard.nodes.nodes()) == 2)
        html = web.get("/nodes").text
    elixir = html.split('<tr data-node="elixir-node-1"')[1].split("</tr>")[0]
    python = html.split('<tr data-node="py-node-1"')[1].split("</tr>")[0]
    assert 'data-language="elixir"' in elixir
    assert "leads Oban<" in elixir
    assert 'data-language="python"' in python
    assert "leads Oban.py<" in python
    assert ">ex</a> 3 · 0" in elixir
    assert ">default</a> 1 · 0" in elixir
    assert ">mailers</a> 5 · 2" in python
    assert ">media</a> 2 · 0" in python
    assert 'node-limit">7<' in python
    assert 'node-running">2<' in python
    assert "2026-12-02 01:00:00 UTC" in python  # uptime from its earliest queue
    assert "2026-12-02 01:28:29 UTC" in elixir
    assert "gone-node" not in html  # an expired lease leads nothing


def test_five_tabs_on_the_cron_and_nodes_pages_cost_what_one_does(dsn: str) -> None:
    app = create_app(dsn=dsn, refresh_interval=60.0)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        for path in ("/crons", "/nodes"):
            page = web.get(path)
            assert page.status_code == 200
            for name, value in SECURITY_HEADERS.items():
                assert page.headers[name] == value
        for _ in range(5):
            assert web.get("/live/crons").status_code == 200
            assert web.get("/live/nodes").status_code == 200
        assert app.state.dashboard.cron_history.loads == 1
        assert app.state.dashboard.leases.loads == 1
