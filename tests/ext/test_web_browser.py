"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The server is ``oban-py web`` itself, run in a subprocess with a token; nodes are
``oban-py start`` subprocesses. Each test takes a screenshot of the page it exercised; with
``OBAN_SCREENSHOTS=1`` they replace the ones in ``docs/assets/`` (the dashboard docs show them),
otherwise they go to a temporary folder, so a test run leaves the tree as it was.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
OBAN_PY = str(Path(sys.executable).parent / "oban-py")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ASSETS = ROOT / "docs" / "assets"
SHOTS = Path(tempfile.gettempdir()) / "oban-py-screenshots"
TOKEN = "browser-test-token"
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'

if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed (/usr/bin/chromium): apt-get install chromium",
        allow_module_level=True,
    )
from playwright import sync_api  # noqa: E402 - only once chromium is known to be there


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OBAN_")}


def sql(dsn: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query.encode(), params)
        return cur.fetchall() if cur.description else []


def insert(dsn: str, **row: Any) -> int:
    columns = {"queue": "default", "worker": "CliSupport.Echo", "args": {}, **row}
    for key in ("args", "meta"):
        if key in columns and not isinstance(columns[key], str):
            columns[key] = json.dumps(columns[key])
    names = ", ".join(columns)
    marks = ", ".join(f"%({k})s" for k in columns)
    ((job_id,),) = sql(
        dsn, f"INSERT INTO oban_jobs ({names}) VALUES ({marks}) RETURNING id", columns
    )
    return int(job_id)


def publish(dsn: str, channel: str, payload: dict[str, Any]) -> None:
    """What a node sends on ``channel`` (as Elixir's, uncompressed: the notifier reads both)."""
    sql(dsn, "SELECT pg_notify(%s, %s)", (f"public.oban_{channel}", json.dumps(payload)))


def publish_until(
    dsn: str, channel: str, payload: dict[str, Any], shown: Callable[[], Any]
) -> None:
    """Publish until ``shown()``: the dashboard hears nothing sent before it listens."""

    def published_and_shown() -> Any:
        publish(dsn, channel, payload)
        return shown()

    wait_for(published_and_shown)


def elixir_payload(channel: str) -> dict[str, Any]:
    """A payload an Elixir node with oban_met sent, as captured in compat_fixtures."""
    notes = json.loads((ROOT / "compat_fixtures" / "oban_met" / "notifications.json").read_text())
    found = next(n for n in notes if n["channel"] == f"public.oban_{channel}")
    payload: dict[str, Any] = found["payload"]
    return payload


def state_of(dsn: str, job_id: int) -> str:
    ((state,),) = sql(dsn, "SELECT state::text FROM oban_jobs WHERE id = %s", (job_id,))
    return str(state)


@pytest.fixture
def server(dsn: str) -> Iterator[str]:
    """``oban-py web`` on a free port, guarded by a token; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [OBAN_PY, "web", "--dsn", dsn, "--port", str(port), "--token", TOKEN, "--refresh", "1"],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"oban-py web exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
        except OSError:
            return False
        return True

    try:
        wait_for(up)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def node(dsn: str) -> Iterator[Callable[[str], None]]:
    """Starts ``oban-py start`` nodes running the given queues; stops them after the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(queues: str, name: str = "web-test-node", config: Path | None = None) -> None:
        settings = ["--config", str(config)] if config is not None else []
        procs.append(
            subprocess.Popen(
                [
                    OBAN_PY,
                    "start",
                    "--dsn",
                    dsn,
                    "--queues",
                    queues,
                    "--node",
                    name,
                    "--import",
                    "tests.clisupport.workers",
                    "--shutdown-grace",
                    "1",
                    *settings,
                ],
                cwd=ROOT,
                env=clean_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """A signed-in page; every confirmation dialog is accepted."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    tab.goto("/login")
    tab.fill("input[name=token]", TOKEN)
    tab.click("button[type=submit]")
    tab.wait_for_url(server + "/")
    yield tab
    context.close()


def shot(page: Any, name: str) -> None:
    folder = ASSETS if os.environ.get("OBAN_SCREENSHOTS") == "1" else SHOTS
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"dashboard-{name}.png"), full_page=True)


def test_overview_shows_the_counts_of_a_seeded_database(dsn: str, page: Any, node: Any) -> None:
    # The node runs "mailers" only; what it could change is kept out of its way (scheduled
    # far ahead), so the counts below stay what was seeded.
    for _ in range(90):
        insert(dsn, queue="mailers", state="completed", attempt=1)
    # Completed a minute ago, as far as the rows say; no node ran them, so no chart counts them.
    sql(
        dsn,
        "UPDATE oban_jobs SET attempted_at = timezone('UTC', now()) - interval '1 minute', "
        "completed_at = timezone('UTC', now()) - interval '1 minute' WHERE state = 'completed'",
    )
    for _ in range(3):
        insert(dsn, queue="media", state="available")
    for i in range(2):
        insert(dsn, queue="mailers", state="discarded", attempt=1, max_attempts=1)
        sql(
            dsn,
            "UPDATE oban_jobs SET attempted_at = timezone('UTC', now()) - interval "
            f"'{10 + i * 20} minutes' WHERE state = 'discarded'",
        )
    insert(dsn, queue="mailers", state="scheduled", scheduled_at="2100-01-01")
    completed = sql(dsn, "SELECT count(*) FROM oban_jobs WHERE state = 'completed'")[0][0]
    node("mailers:5,reports:2")

    page.goto("/")
    # The page was first shown before the seeding: the live refresh brings the counts.
    wait_for(lambda: page.text_content(".state-available .n") == "3")
    assert page.text_content(".state-completed .n") == str(completed)
    assert page.text_content(".state-discarded .n") == "2"
    assert page.text_content(".state-scheduled .n") == "1"
    assert page.text_content('tr[data-queue="media"] td[data-state="available"]') == "3"
    page.wait_for_selector('tr[data-node="web-test-node"]', timeout=15_000)
    # The node's sonar ping may be heard before its first queue check-in.
    wait_for(lambda: "reports" in page.text_content('tr[data-node="web-test-node"]'))
    # The charts show what the node runs and reports (the seeded rows were never run).
    assert page.locator("svg.chart rect.bar-ok").count() == 0
    insert(dsn, queue="reports", worker="CliSupport.Echo")
    insert(dsn, queue="reports", worker="CliSupport.Fail", max_attempts=1)
    wait_for(lambda: page.locator("svg.chart rect.bar-ok").count() > 0, timeout=30)
    wait_for(lambda: page.locator("svg.chart rect.bar-fail").count() > 0)
    assert "(1 in all)" in page.text_content(".charts figure:first-child figcaption")
    shot(page, "overview")


def test_the_metrics_page_charts_executions_and_times_by_the_chosen_label(
    dsn: str, page: Any, node: Any
) -> None:
    node("mailers:5,reports:2", name="metrics-node")
    for _ in range(6):
        insert(dsn, queue="mailers", worker="CliSupport.Echo")
    for _ in range(2):
        insert(dsn, queue="reports", worker="CliSupport.Fail", max_attempts=1)
    page.goto("/metrics")
    # Live: the executions arrive while the page is open, grouped by state by default.
    wait_for(
        lambda: page.locator('tr[data-group="completed"] td.num').first.text_content() == "6",
        timeout=30,
    )
    wait_for(lambda: page.locator('tr[data-group="discarded"] td.num').first.text_content() == "2")
    assert page.locator("#exec-chart rect.bar-ok").count() >= 1
    assert page.locator("#exec-chart rect.bar-fail").count() >= 1
    # By worker over the last 5 minutes, with p99 run and wait times.
    page.select_option("#chart-group", "worker")
    page.select_option("#chart-window", "5m")
    page.select_option("#chart-pct", "p99")
    page.click("#chart-apply")
    page.wait_for_url("**/metrics?*group=worker*")
    assert page.locator('tr[data-group="CliSupport.Echo"] td.num').first.text_content() == "6"
    assert page.locator('tr[data-group="CliSupport.Fail"] td.num').first.text_content() == "2"
    assert page.locator("#exec-time-chart polyline, #exec-time-chart circle").count() >= 1
    assert page.locator("#wait-time-chart polyline, #wait-time-chart circle").count() >= 1
    assert "last 5m" in page.text_content("#exec-chart figcaption")
    shot(page, "metrics")
    # One queue, by node: the choices come from what was heard.
    page.select_option("#chart-queue", "reports")
    page.select_option("#chart-group", "node")
    page.click("#chart-apply")
    page.wait_for_url("**queue=reports*")
    assert page.locator('tr[data-group="metrics-node"] td.num').first.text_content() == "2"
    # The queue page links to its own charts.
    page.goto("/queues/mailers")
    page.click("#queue-metrics")
    page.wait_for_url("**/metrics?queue=mailers*")
    assert page.locator('tr[data-group="CliSupport.Echo"] td.num').first.text_content() == "6"


def test_the_job_list_filters_and_pages(dsn: str, page: Any) -> None:
    ids = [insert(dsn, queue="alpha" if i % 2 else "beta", args={"n": i}) for i in range(60)]
    alpha = [job_id for i, job_id in enumerate(ids) if i % 2]
    page.goto("/jobs")
    assert page.locator("tr[data-id]").count() == 25
    page.fill("input[name=queue]", "alpha")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/jobs?*queue=alpha*")
    shown = [
        int(x)
        for x in page.locator("tr[data-id]").evaluate_all("rows => rows.map(r => r.dataset.id)")
    ]
    assert shown == alpha[::-1][:25]
    shot(page, "jobs")
    page.click("a[rel=next]")
    older = [
        int(x)
        for x in page.locator("tr[data-id]").evaluate_all("rows => rows.map(r => r.dataset.id)")
    ]
    assert older == alpha[::-1][25:]
    assert page.locator("a[rel=next]").count() == 0
    page.click("a[rel=prev]")
    assert page.locator("tr[data-id]").first.get_attribute("data-id") == str(alpha[-1])


def test_retrying_and_cancelling_from_the_job_page_changes_the_row(dsn: str, page: Any) -> None:
    from oban_py.job.terms import Atom, encode_recorded

    job_id = insert(
        dsn,
        queue="mailers",
        worker="MyApp.Workers.Welcome",
        state="discarded",
        attempt=3,
        max_attempts=3,
        args={"user_id": 42, "template": "welcome"},
        meta={"return": encode_recorded({"sent": True, "provider": Atom("ses")})},
        tags=["signup"],
    )
    trace = (
        'Traceback (most recent call last):\n  File "app/workers.py", line 12, in process\n'
        '    raise TimeoutError("smtp timed out")\nTimeoutError: smtp timed out'
    )
    sql(
        dsn,
        "UPDATE oban_jobs SET errors = ARRAY[%s::jsonb, %s::jsonb], attempted_at = "
        "timezone('UTC', now()), discarded_at = timezone('UTC', now()) WHERE id = %s",
        (
            json.dumps({"attempt": 2, "at": "2026-12-02T01:58:00.120000Z", "error": trace}),
            json.dumps({"attempt": 3, "at": "2026-12-02T02:01:00.250000Z", "error": trace}),
            job_id,
        ),
    )
    page.goto(f"/jobs/{job_id}")
    assert page.text_content("#job-state") == "discarded"
    assert "TimeoutError: smtp timed out" in page.text_content("body")
    assert "'provider': Atom('ses')" in page.text_content("#job-result")
    shot(page, "job")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    page.click("button[value=retry]")
    page.wait_for_selector("p.flash.ok")
    assert page.text_content("#job-state") == "available"
    assert state_of(dsn, job_id) == "available"
    page.click("button[value=cancel]")
    page.wait_for_selector("p.flash.ok")
    assert page.text_content("#job-state") == "cancelled"
    assert state_of(dsn, job_id) == "cancelled"
    assert dialogs == [f"Retry 1 job (id {job_id})?", f"Cancel 1 job (id {job_id})?"]


def test_pausing_a_queue_stops_a_running_nodes_fetching(dsn: str, page: Any, node: Any) -> None:
    node("web:2")
    page.goto("/queues/web")
    row = 'tr[data-node="web-test-node"]'
    page.wait_for_selector(row, timeout=15_000)  # heard through gossip, live refresh
    page.reload()  # the actions are drawn with the page, from the nodes heard by then
    page.wait_for_selector(row)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    page.click("#queue-pause")
    page.wait_for_selector("p.flash.ok")
    wait_for(lambda: page.text_content(f"{row} .paused-cell") == "paused")
    held = [insert(dsn, queue="web") for _ in range(3)]
    sql(dsn, "SELECT pg_notify('public.oban_insert', '{\"queue\":\"web\"}')")
    time.sleep(3)  # a running node fetches within its 1 s poll; paused, it must not
    assert [state_of(dsn, i) for i in held] == ["available"] * 3
    page.reload()  # the newest-jobs table is not live; the counts and nodes are
    page.wait_for_selector(row)
    # Paused on its only node: resume is offered, pause is not, and the confirm counts nodes.
    assert page.locator("#queue-pause").count() == 0
    assert dialogs == ["Pause queue web on 1 node?"]
    assert "on 1 node?" in (page.get_attribute("form:has(#queue-resume)", "data-confirm") or "")
    assert "on 1 node?" in (page.get_attribute("form:has(#queue-scale)", "data-confirm") or "")
    shot(page, "queue")
    page.click("#queue-resume")
    page.wait_for_selector("p.flash.ok")
    wait_for(lambda: all(state_of(dsn, i) == "completed" for i in held))
    wait_for(lambda: page.text_content(f"{row} .paused-cell") == "no")
    page.reload()
    page.wait_for_selector(row)
    assert page.locator("#queue-resume").count() == 0
    assert page.locator("#queue-pause").count() == 1


def test_an_xss_payload_in_args_renders_inert(dsn: str, page: Any) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    job_id = insert(dsn, queue="x", worker="Evil", args={"name": XSS}, tags=[XSS])
    for path in ("/jobs", f"/jobs/{job_id}", "/"):
        page.goto(path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__xss") is None
    # A node publishing hostile names, queues, workers and cron expressions.
    for path, channel, payload in (
        ("/nodes", "gossip", {"checks": [{"node": XSS, "name": XSS, "queue": XSS, "limit": 1}]}),
        ("/crons", "cronitor", {"crontab": [[XSS, XSS, {"name": XSS}]], "node": XSS}),
    ):
        page.goto(path)
        publish_until(dsn, channel, payload, lambda: XSS in page.text_content("main"))
        assert page.evaluate("window.__xss") is None
        assert page.locator("main img").count() == 0
    page.goto(f"/jobs/{job_id}")
    assert json.dumps(XSS) in page.text_content("#job-args")  # shown as the text it is
    assert page.locator("#job-args img").count() == 0
    assert dialogs == []


def test_an_action_without_the_token_is_refused(dsn: str, browser: Any, server: str) -> None:
    job_id = insert(dsn)
    stranger = browser.new_context(base_url=server)
    try:
        tab = stranger.new_page()
        tab.goto("/")
        assert tab.url == server + "/login"
        shot(tab, "login")
        refused = stranger.request.post(f"/jobs/{job_id}/cancel", form={"_csrf": "x"})
        assert refused.status == 401
        forged = stranger.request.post(
            f"/jobs/{job_id}/cancel",
            form={"_csrf": "x"},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert forged.status == 403  # the token alone is not enough: the CSRF token is missing
    finally:
        stranger.close()
    assert state_of(dsn, job_id) == "available"


def test_the_cron_page_shows_each_nodes_crontab_with_its_runs(
    dsn: str, page: Any, node: Any, tmp_path: Path
) -> None:
    from oban_py.crontab import CronEntry

    config = tmp_path / "oban.toml"
    config.write_text(
        'crontab = [["* * * * *", "CliSupport.Echo"], ["0 9 * * MON", "CliSupport.EchoSync",'
        ' {args = {report = "weekly"}, timezone = "America/New_York"}]]\n'
    )
    node("default:2", config=config)
    minutely = CronEntry("* * * * *", "CliSupport.Echo")
    meta = {"cron": True, "cron_expr": "* * * * *", "cron_name": minutely.name}
    ran = [insert(dsn, meta={**meta, "cron_tz": "Etc/UTC"}) for _ in range(3)]
    # An Elixir node's crontab as captured (unnamed entry) and one job its cron inserted.
    elixir_meta = {"cron": True, "cron_expr": "* * * * *", "cron_name": "47317141"}
    elixir_job = insert(dsn, worker="Interop.NoopWorker", meta=elixir_meta, state="discarded")

    page.goto("/crons")
    mine = 'tr[data-worker="CliSupport.Echo"][data-expr="* * * * *"]'
    elixir = 'tr[data-worker="Interop.NoopWorker"]'
    publish_until(dsn, "cronitor", elixir_payload("cronitor"), page.locator(elixir).count)
    # The node publishes its crontab at start; its jobs complete on the node: the page follows.
    wait_for(lambda: "completed" in (page.text_content(f"{mine} .last-run") or ""), timeout=30)
    assert "web-test-node" in page.text_content(mine)
    for job_id in ran:
        assert page.locator(f'{mine} td.runs a[href="/jobs/{job_id}"]').count() == 1
    next_run = page.text_content(f"{mine} .next-run")
    assert next_run.startswith(time.strftime("%Y-%m-%d", time.gmtime(time.time() + 60)))
    weekly = 'tr[data-worker="CliSupport.EchoSync"]'
    assert "America/New_York" in page.text_content(f"{weekly} .cron-tz")
    assert "no jobs yet" in page.text_content(f"{weekly} .last-run")
    assert '"report":"weekly"' in page.text_content(f"{weekly} .cron-opts")
    assert "elixir-node-1" in page.text_content(elixir)
    assert "discarded" in page.text_content(f"{elixir} .last-run")
    assert page.locator(f'{elixir} td.runs a[href="/jobs/{elixir_job}"]').count() == 1
    page.click("header.top nav a[href='/nodes']")
    page.wait_for_url("**/nodes")
    page.click("header.top nav a[href='/crons']")
    page.wait_for_selector(mine)
    shot(page, "crons")


def test_the_nodes_page_shows_python_and_elixir_nodes_live(dsn: str, page: Any, node: Any) -> None:
    node("mailers:5,reports:2")
    sql(
        dsn,
        "INSERT INTO oban_peers (name, node, started_at, expires_at) VALUES ('Oban', "
        "'elixir-node-1', now(), timezone('UTC', now()) + interval '5 minutes')",
    )
    page.goto("/nodes")
    python = 'tr[data-node="web-test-node"]'
    elixir = 'tr[data-node="elixir-node-1"]'
    # The Python node gossips every second and takes Python's lease; Elixir's check-ins are the
    # captured ones, published until heard.
    publish_until(dsn, "gossip", elixir_payload("gossip"), page.locator(elixir).count)
    wait_for(lambda: "reports" in (page.text_content(python) or ""))
    wait_for(lambda: "leads Oban.py" in page.text_content(f"{python} .leader"), timeout=30)
    assert page.get_attribute(python, "data-language") == "python"
    assert page.text_content(f"{python} .node-limit") == "7"
    assert page.get_attribute(elixir, "data-language") == "elixir"
    assert "leads Oban" in page.text_content(f"{elixir} .leader")
    assert page.text_content(f"{elixir} .node-limit") == "4"
    assert "ago" in page.text_content(f"{python} .uptime")
    shot(page, "nodes")


def shown_ids(page: Any) -> list[int]:
    found = page.locator("tr[data-id]").evaluate_all("rows => rows.map(r => r.dataset.id)")
    return [int(x) for x in found]


def test_selected_rows_are_acted_on_after_a_confirm_that_counts_them(dsn: str, page: Any) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    ids = [insert(dsn, queue="picked") for _ in range(4)]
    page.goto("/jobs?queue=picked")
    page.check(f'input[name=id][value="{ids[0]}"]')
    page.check(f'input[name=id][value="{ids[2]}"]')
    page.click("#selection button[value=cancel]")
    page.wait_for_selector("p.flash.ok")
    assert dialogs == ["Cancel 2 selected jobs?"]
    assert "Cancelled 2 of 2 selected jobs." in page.text_content("p.flash")
    assert [state_of(dsn, i) for i in ids] == ["cancelled", "available", "cancelled", "available"]
    # Select-all ticks every row of the page.
    page.check("#select-all")
    page.click("#selection button[value=retry]")
    page.wait_for_selector("p.flash.ok")
    assert dialogs[-1] == "Retry 4 selected jobs?"
    assert [state_of(dsn, i) for i in ids] == ["available"] * 4


def test_a_bulk_action_confirms_its_count_and_shows_its_progress(dsn: str, page: Any) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    ids = [insert(dsn, queue="bulk", worker="MyApp.Workers.Report") for _ in range(3)]
    insert(dsn, queue="other", worker="MyApp.Workers.Report")
    page.goto("/jobs?queue=bulk&worker=Report")
    assert shown_ids(page) == ids[::-1]
    page.click("section.bulk form:has(input[value=cancel]) button")
    page.wait_for_selector("p.flash.ok")
    assert dialogs == ["Cancel 3 jobs matching this filter?"]
    page.wait_for_selector('#bulk-runs tr[data-state="done"]', timeout=15_000)
    assert page.text_content("#bulk-runs td.changed") == "3"
    assert [state_of(dsn, i) for i in ids] == ["cancelled"] * 3
    shot(page, "jobs-bulk")


def test_the_job_list_shows_new_jobs_while_open_and_holds_still_while_rows_are_ticked(
    dsn: str, page: Any
) -> None:
    first = insert(dsn, queue="live")
    page.goto("/jobs?queue=live")
    assert shown_ids(page) == [first]
    second = insert(dsn, queue="live")
    wait_for(lambda: shown_ids(page) == [second, first])
    page.check(f'input[name=id][value="{first}"]')
    insert(dsn, queue="live")
    time.sleep(2.5)  # two refresh intervals: the ticked rows are not replaced
    assert shown_ids(page) == [second, first]
    assert page.is_checked(f'input[name=id][value="{first}"]')


def test_every_page_has_a_favicon(dsn: str, page: Any, browser: Any, server: str) -> None:
    job_id = insert(dsn, queue="icons")
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    for path in ("/", "/jobs", f"/jobs/{job_id}", "/queues/icons", "/crons", "/nodes", "/metrics"):
        page.goto(path)
        href = page.get_attribute("link[rel=icon]", "href")
        assert href is not None, path
        answer = page.evaluate(
            "href => fetch(href).then(r => [r.status, r.headers.get('content-type')])", href
        )
        assert answer == [200, "image/svg+xml"], path
    stranger = browser.new_context(base_url=server)
    try:
        login = stranger.new_page()
        login.goto("/")
        assert login.url == server + "/login"
        assert login.get_attribute("link[rel=icon]", "href") == href
    finally:
        stranger.close()
    page.wait_for_timeout(500)
    assert missing == []


def test_the_job_list_form_filters_by_worker_node_priority_attempt_and_time_and_sorts(
    dsn: str, page: Any
) -> None:
    sql(
        dsn,
        "INSERT INTO oban_jobs (queue, worker, args) "
        "SELECT 'filler', 'MyApp.Workers.Filler', '{}' FROM generate_series(1, 1200)",
    )
    mailer = {"queue": "pick", "worker": "MyApp.Workers.Mailer", "state": "retryable"}
    # Inserted first, scheduled last: the two orders differ.
    early = insert(
        dsn,
        **mailer,
        attempted_by=["node-a", "uuid-1"],
        attempt=2,
        priority=3,
        inserted_at="2026-01-01T10:00:00",
        scheduled_at="2026-03-01T00:00:00",
    )
    late = insert(
        dsn,
        **mailer,
        attempted_by=["node-b", "uuid-2"],
        attempt=1,
        priority=0,
        inserted_at="2026-01-01T12:00:00",
        scheduled_at="2026-02-01T00:00:00",
    )
    insert(dsn, queue="pick", worker="MyApp.Workers.NotMailer", state="retryable")

    def apply(**fields: str) -> list[int]:
        for name, value in fields.items():
            if name == "sort":
                page.select_option("select[name=sort]", value)
            else:
                page.fill(f"input[name={name}]", value)
        page.click("form.filters button[type=submit]")
        page.wait_for_load_state("load")
        return shown_ids(page)

    def totals(path: str) -> str:
        page.goto(path)
        return str(page.text_content("#totals"))

    # The counts behind the totals are shared for a refresh interval: a later visit has them.
    wait_for(lambda: "1,203" in totals("/jobs"))
    page.goto("/jobs?queue=filler")
    assert page.text_content("#totals").split() == ["1,200", "jobs", "match."]
    page.goto("/jobs?queue=pick")
    # The last segment of a dotted worker name, as the CLI suggests it.
    assert apply(worker="Mailer") == [late, early]
    assert apply(node="node-a") == [early]
    assert apply(node="", priority="0") == [late]
    assert apply(priority="", attempt="2") == [early]
    assert apply(attempt="", since="2026-01-01T11:00:00", until="2026-01-01T13:00:00") == [late]
    assert apply(since="", until="") == [late, early]
    assert apply(sort="scheduled") == [early, late]
    assert "sort=scheduled" in page.url
    assert page.input_value("input[name=worker]") == "Mailer"
