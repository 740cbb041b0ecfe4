"""The dashboard (oban_py_ext.web) over HTTP: pages, filters, paging, actions, access, escaping.

Requests go through Starlette's test client to the real app on a real database; the browser
tests (test_web_browser.py) drive the same pages in Chromium.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oban_py_ext.web import create_app
from oban_py_ext.web.cache import Shared
from oban_py_ext.web.nodes import NodeWatch
from oban_py_ext.web.reads import COUNT_CAP, rows_read
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from oban_py import get_instance, notifier
from oban_py.client.registry import forget
from oban_py.config import Config
from oban_py.job.terms import Atom, encode_recorded

FIXTURES = Path(__file__).resolve().parent.parent.parent / "compat_fixtures"
XSS = "<script>window.__xss = 1</script><img src=x onerror=alert(1)>"


def insert(dsn: str, **row: Any) -> int:
    columns = {"queue": "default", "worker": "Web.Test", "args": {}, **row}
    for key in ("args", "meta"):
        if key in columns and not isinstance(columns[key], str):
            columns[key] = json.dumps(columns[key])
    names = ", ".join(columns)
    marks = ", ".join(f"%({k})s" for k in columns)
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(
            f"INSERT INTO oban_jobs ({names}) VALUES ({marks}) RETURNING id".encode(), columns
        ).fetchone()
    assert found is not None
    return int(found[0])


def state_of(dsn: str, job_id: int) -> str | None:
    with psycopg.connect(dsn) as conn:
        query = "SELECT state::text FROM oban_jobs WHERE id = %s"
        found = conn.execute(query, (job_id,)).fetchone()
    return None if found is None else str(found[0])


@pytest.fixture
def web(dsn: str) -> Iterator[TestClient]:
    with TestClient(create_app(dsn=dsn), base_url="http://127.0.0.1:8765") as client:
        yield client


def csrf(client: TestClient) -> str:
    if "oban_web_csrf" not in client.cookies:
        client.get("/jobs")
    return str(client.cookies["oban_web_csrf"])


def post(client: TestClient, path: str, **data: Any) -> Any:
    return client.post(path, data={"_csrf": csrf(client), **data}, follow_redirects=False)


def ids_on(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-id="(\d+)">', html)]


# -- pages -----------------------------------------------------------------------------------


def test_overview_shows_counts_by_state_and_queue(dsn: str, web: TestClient) -> None:
    for _ in range(3):
        insert(dsn, queue="mailers", state="available")
    insert(dsn, queue="mailers", state="discarded")
    insert(dsn, queue="media", state="scheduled", scheduled_at="2100-01-01")
    page = web.get("/")
    assert page.status_code == 200
    html = page.text
    assert re.search(r'state-available"[^>]*data-state="available">\s*<span class="n">3<', html)
    row = re.search(r'<tr data-queue="mailers">(.*?)</tr>', html, re.S)
    assert row is not None
    assert '<td class="num" data-state="available">3</td>' in row.group(1)
    assert '<td class="num" data-state="discarded">1</td>' in row.group(1)
    assert 'data-queue="media"' in html


def test_every_page_sends_a_strict_content_security_policy(web: TestClient) -> None:
    headers = web.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"


def test_job_list_filters_by_state_queue_worker_tags_and_args(dsn: str, web: TestClient) -> None:
    a = insert(dsn, queue="q1", worker="W.A", tags=["vip"], args={"account": 7, "n": 1})
    b = insert(dsn, queue="q2", worker="W.B", args={"account": 8, "email": "ann@example.com"})
    c = insert(dsn, queue="q1", worker="W.B", state="discarded", args={"account": 7})

    def listed(query: str) -> list[int]:
        response = web.get("/jobs?" + query)
        assert response.status_code == 200, response.text
        return ids_on(response.text)

    assert listed("") == [c, b, a]
    assert listed("state=discarded") == [c]
    assert listed("queue=q1") == [c, a]
    assert listed("worker=W.B") == [c, b]
    assert listed("tags=vip") == [a]
    assert listed("args=%7B%22account%22%3A7%7D") == [c, a]  # {"account":7}, containment
    assert listed("args=ann%40example") == [b]  # plain text: searched in the args' JSON
    assert listed("queue=q1&worker=W.B") == [c]


def test_job_list_refuses_unusable_filters_with_a_reason(web: TestClient) -> None:
    bad_state = web.get("/jobs?state=running")
    assert bad_state.status_code == 400
    assert "unknown state" in bad_state.text
    nul = web.get("/jobs?queue=a%00b")
    assert nul.status_code == 400
    assert "NUL" in nul.text
    assert web.get("/jobs?worker=" + "x" * 5000).status_code == 400


def test_hostile_filter_values_are_searched_or_refused_never_crash(
    dsn: str, web: TestClient
) -> None:
    job_id = insert(dsn, args={"n": 1})
    hostile = [
        "%ED%A0%80",  # a lone surrogate, UTF-8 encoded: not valid UTF-8
        "%FF%FE",
        "[" * 900 + "]" * 900,  # deeper than a JSON parser goes
        "%5B1%2C2%5D",  # [1,2]: JSON but no object, searched as text
        "%7B%22n%22%3A1e400%7D",  # {"n":1e400}: beyond double range
        "%22%3B%20DROP%20TABLE%20oban_jobs%3B%20--",
        "%25%5F%5C",  # LIKE wildcards mean nothing here
    ]
    for value in hostile:
        for field in ("args", "queue", "worker", "tags", "node"):
            response = web.get(f"/jobs?{field}={value}")
            assert response.status_code == 200, (field, value, response.text[:300])
        # Numbers, times and sorts take only their own kind of value, and say so.
        for field in ("priority", "attempt", "since", "until", "sort"):
            response = web.get(f"/jobs?{field}={value}")
            assert response.status_code == 400, (field, value, response.text[:300])
            assert f"{field} must be" in response.text or f"unknown {field}" in response.text
            assert web.get(f"/jobs/count?{field}={value}").status_code == 400
        # Cursors that are no cursors are ignored.
        for field in ("key", "floor", "before", "after"):
            response = web.get(f"/jobs?sort=scheduled&{field}={value}")
            assert response.status_code == 200, (field, value, response.text[:300])
    for number in ("-1", "1.5", "99999999999", "%EF%BC%91", "1e3", "0x10"):
        assert web.get(f"/jobs?priority={number}").status_code == 400
        assert web.get(f"/jobs?attempt={number}").status_code == 400
    assert ids_on(web.get("/jobs?args=%7B%22n%22%3A1%7D").text) == [job_id]


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    field=st.sampled_from(
        ["worker", "node", "tags", "args", "priority", "attempt", "since", "until", "sort", "key"]
    ),
    value=st.text(max_size=40) | st.from_regex(r"-?[0-9]{1,12}(\.[0-9])?", fullmatch=True),
    path=st.sampled_from(["/jobs", "/jobs/count", "/live/jobs"]),
)
def test_any_value_in_a_new_filter_is_used_or_refused_with_a_reason(
    web: TestClient, field: str, value: str, path: str
) -> None:
    response = web.get(
        path, params={field: value, "sort": "scheduled"} if field == "key" else {field: value}
    )
    assert response.status_code in (200, 400), (field, value, response.text[:300])
    if response.status_code == 400:
        assert field in response.text or "NUL" in response.text


def test_the_web_command_refuses_unsafe_or_malformed_options(dsn: str) -> None:
    from typer.testing import CliRunner

    from oban_py.cli import app

    runner = CliRunner()
    exposed = runner.invoke(app, ["web", "--dsn", dsn, "--host", "0.0.0.0"])
    assert exposed.exit_code == 2
    assert "without --token or --basic" in exposed.output
    assert runner.invoke(app, ["web", "--dsn", dsn, "--basic", "nopassword"]).exit_code == 2
    assert runner.invoke(app, ["web", "--dsn", dsn, "--token", "short"]).exit_code == 2
    assert runner.invoke(app, ["web"], env={"DATABASE_URL": "", "OBAN_DSN": ""}).exit_code == 2


def test_the_web_command_passes_its_count_cap_to_the_dashboard(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import oban_py_ext.web
    import uvicorn
    from typer.testing import CliRunner

    from oban_py.cli import app

    made: list[dict[str, Any]] = []
    monkeypatch.setattr(oban_py_ext.web, "create_app", lambda **options: made.append(options))
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    runner = CliRunner()
    assert runner.invoke(app, ["web", "--dsn", dsn, "--count-cap", "500"]).exit_code == 0
    assert runner.invoke(app, ["web", "--dsn", dsn]).exit_code == 0
    assert made[0]["count_cap"] == 500
    assert made[1]["count_cap"] == COUNT_CAP == 10_000
    assert runner.invoke(app, ["web", "--dsn", dsn, "--count-cap", "0"]).exit_code == 2


def test_job_list_pages_by_keyset_both_ways(dsn: str) -> None:
    ids = [insert(dsn, args={"n": i}) for i in range(60)]
    with TestClient(create_app(dsn=dsn, page_size=25), base_url="http://127.0.0.1") as web:
        first = web.get("/jobs").text
        assert ids_on(first) == ids[::-1][:25]
        older = re.search(r'rel="next" href="([^"]+)"', first)
        assert older is not None
        assert 'rel="prev"' not in first
        second = web.get(older.group(1).replace("&amp;", "&")).text
        assert ids_on(second) == ids[::-1][25:50]
        third_link = re.search(r'rel="next" href="([^"]+)"', second)
        assert third_link is not None
        third = web.get(third_link.group(1).replace("&amp;", "&")).text
        assert ids_on(third) == ids[::-1][50:]
        assert 'rel="next"' not in third
        back = re.search(r'rel="prev" href="([^"]+)"', third)
        assert back is not None
        assert ids_on(web.get(back.group(1).replace("&amp;", "&")).text) == ids[::-1][25:50]
        # Cursors that are no ids at all are ignored, not errors.
        assert web.get("/jobs?before=99999999999999999999999").status_code == 200
        assert web.get("/jobs?before=-5&after=abc").status_code == 200


def test_paging_keeps_the_filter(dsn: str) -> None:
    for i in range(30):
        insert(dsn, queue="even" if i % 2 == 0 else "odd")
    with TestClient(create_app(dsn=dsn, page_size=10), base_url="http://127.0.0.1") as web:
        first = web.get("/jobs?queue=even").text
        link = re.search(r'rel="next" href="([^"]+)"', first)
        assert link is not None
        assert "queue=even" in link.group(1)
        rows = ids_on(web.get(link.group(1).replace("&amp;", "&")).text)
        assert len(rows) == 5
        assert all(state_of(dsn, i) == "available" for i in rows)


def test_job_page_shows_args_meta_errors_and_the_decoded_result(dsn: str, web: TestClient) -> None:
    recorded = encode_recorded({"sum": 42, "status": Atom("ok")})
    trace = "** (RuntimeError) boom\n    (app) lib/x.ex:1: X.perform/1"
    error = {"attempt": 1, "at": "2026-01-01T00:00:00Z", "error": trace}
    job_id = insert(
        dsn,
        args={"big": 123456789012345678901234567890, "huge": 1, "s": "é"},
        meta={"return": recorded, "note": "kept"},
        attempt=1,
        state="retryable",
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE oban_jobs SET errors = ARRAY[%s::jsonb] WHERE id = %s",
            (json.dumps(error), job_id),
        )
    html = web.get(f"/jobs/{job_id}").text
    assert "123456789012345678901234567890" in html  # wide integers exact
    assert "** (RuntimeError) boom" in html
    assert "Attempt 1 · 2026-01-01T00:00:00Z" in html
    assert "&#39;sum&#39;: 42" in html  # decoded Erlang term, escaped
    assert "Progress" in html
    assert "Workflow" in html


def test_poison_rows_render_without_crashing(dsn: str, web: TestClient) -> None:
    # Rows Elixir or hand-written SQL can leave: args that are no object, a recorded value
    # that is no term, an error entry that is no object, a number beyond double range.
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args, meta, errors) VALUES "
            "('default', 'W', '[1, \"two\", null]', '{\"return\": \"!!not base64!!\"}', "
            "ARRAY['\"just text\"'::jsonb, '{\"n\": 1e400}'::jsonb]) RETURNING id"
        ).fetchone()
    assert found is not None
    page = web.get(f"/jobs/{found[0]}")
    assert page.status_code == 200
    assert "cannot decode the recorded term" in page.text
    assert "1" + "0" * 400 in page.text  # jsonb spells 1e400 out; shown exactly
    assert web.get("/jobs").status_code == 200
    assert web.get("/jobs/99999999").status_code == 404
    assert web.get("/jobs/99999999999999999999").status_code == 404


def test_database_values_are_escaped_everywhere(dsn: str, web: TestClient) -> None:
    job_id = insert(
        dsn,
        queue=XSS,
        worker=XSS,
        args={"html": XSS},
        tags=[XSS],
        meta={"cron_name": XSS, "m": XSS},
        attempted_by=[XSS, XSS],
    )
    web.get("/")  # starts listening
    # Hostile node, instance, queue, worker names and cron expressions, as a node may publish.
    check = {"node": XSS, "name": XSS, "queue": XSS, "limit": 1, "started_at": XSS}
    tab = {"crontab": [[XSS, XSS, {"name": XSS, "timezone": XSS, "args": {"h": XSS}}]]}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_peers (name, node, started_at, expires_at) VALUES "
            "(%s, %s, now(), timezone('UTC', now()) + interval '1 minute')",
            (XSS, XSS + "-elsewhere"),
        )
        notifier.publish_sync(conn, "public", "gossip", [{"checks": [check]}])
        notifier.publish_sync(conn, "public", "cronitor", [{**tab, "node": XSS, "name": XSS}])
    dashboard = web.app.state.dashboard  # type: ignore[attr-defined]
    for _ in range(100):
        if dashboard.nodes.checks() and dashboard.crontabs.entries():
            break
        threading.Event().wait(0.05)
    post(web, "/jobs/bulk", action="retry", worker=XSS, node=XSS)
    pages = {
        "overview": web.get("/").text,
        "jobs": web.get("/jobs").text,
        "filtered": web.get(
            "/jobs?" + urlencode({"worker": XSS, "node": XSS, "sort": "attempted"})
        ).text,
        "live jobs": web.get("/live/jobs?" + urlencode({"node": XSS})).text,
        "bulk": web.get("/live/bulk").text,
        "job": web.get(f"/jobs/{job_id}").text,
        "queue": web.get("/queues/" + XSS.replace("/", "%2F")).text,
        "crons": web.get("/crons").text,
        "nodes": web.get("/nodes").text,
    }
    for name, html in pages.items():
        assert "<script>window.__xss" not in html, name
        assert "<img src=x" not in html, name
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in pages["job"]
    assert pages["crons"].count("&lt;script&gt;window.__xss") >= 3  # worker, name, expression
    assert f'href="/jobs/{job_id}"' in pages["crons"]  # its job, found by the hostile cron_name
    assert pages["nodes"].count("&lt;script&gt;window.__xss") >= 4  # node, instance, queue, lease


# -- actions ---------------------------------------------------------------------------------


def test_retry_cancel_and_delete_one_job(dsn: str, web: TestClient) -> None:
    discarded = insert(dsn, state="discarded", attempt=1, max_attempts=1)
    waiting = insert(dsn)
    retried = post(web, f"/jobs/{discarded}/retry")
    assert retried.status_code == 303
    assert state_of(dsn, discarded) == "available"
    assert post(web, f"/jobs/{waiting}/cancel").status_code == 303
    assert state_of(dsn, waiting) == "cancelled"
    report = web.get(f"/jobs/{waiting}").text
    assert f"Job {waiting}: cancelled." in report
    assert post(web, f"/jobs/{waiting}/delete").status_code == 303
    assert state_of(dsn, waiting) is None


def test_an_action_that_does_nothing_says_why(dsn: str, web: TestClient) -> None:
    job_id = insert(dsn)  # available: nothing to retry
    page = web.get(post(web, f"/jobs/{job_id}/retry").headers["location"]).text
    assert "was not retried: it is available or executing already" in page


def test_actions_need_post_and_the_csrf_token(dsn: str, web: TestClient) -> None:
    job_id = insert(dsn)
    assert web.get(f"/jobs/{job_id}/cancel").status_code == 405
    no_token = web.post(f"/jobs/{job_id}/cancel", data={}, follow_redirects=False)
    assert no_token.status_code == 403
    csrf(web)
    wrong = web.post(f"/jobs/{job_id}/cancel", data={"_csrf": "guess"}, follow_redirects=False)
    assert wrong.status_code == 403
    other_site = web.post(
        f"/jobs/{job_id}/cancel",
        data={"_csrf": csrf(web)},
        headers={"origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert other_site.status_code == 403
    sandboxed = web.post(
        f"/jobs/{job_id}/cancel",
        data={"_csrf": csrf(web)},
        headers={"origin": "null"},
        follow_redirects=False,
    )
    assert sandboxed.status_code == 403
    assert state_of(dsn, job_id) == "available"
    behind_proxy = web.post(
        f"/jobs/{job_id}/cancel",
        data={"_csrf": csrf(web)},
        headers={"origin": "https://ops.example.com", "x-forwarded-host": "ops.example.com"},
        follow_redirects=False,
    )
    assert behind_proxy.status_code == 303
    assert state_of(dsn, job_id) == "cancelled"


def finished_run(client: TestClient, timeout: float = 10.0) -> str:
    """The newest bulk run's row on the progress fragment, once it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        html = client.get("/live/bulk").text
        row = re.search(r'<tr data-run="\d+" data-state="(\w+)">(.*?)</tr>', html, re.S)
        if row is not None and row.group(1) != "running":
            return row.group(0)
        time.sleep(0.05)
    raise AssertionError("the bulk run did not finish")


def test_bulk_actions_apply_to_every_job_matching_the_filter(dsn: str, web: TestClient) -> None:
    failed = [insert(dsn, state="discarded", queue="q", attempt=1, max_attempts=1) for _ in "12345"]
    other = insert(dsn, state="discarded", queue="elsewhere", attempt=1, max_attempts=1)
    done = post(web, "/jobs/bulk", action="retry", state="discarded", queue="q")
    assert done.status_code == 303
    assert "queue=q" in done.headers["location"]
    assert "Started retry #1" in web.get(done.headers["location"]).text
    run = finished_run(web)
    assert 'data-state="done"' in run
    assert '<td class="num changed">5</td>' in run
    assert [state_of(dsn, i) for i in failed] == ["available"] * 5
    assert state_of(dsn, other) == "discarded"
    unfiltered = web.get(post(web, "/jobs/bulk", action="delete").headers["location"]).text
    assert "Bulk actions need a filter." in unfiltered
    assert state_of(dsn, other) == "discarded"


def test_bulk_actions_stop_at_the_bulk_limit_of_jobs_they_change(dsn: str) -> None:
    # Finished jobs first: a cancel passes them by rather than spending its limit on them.
    for _ in range(3):
        insert(dsn, queue="many", state="completed")
    for _ in range(7):
        insert(dsn, queue="many")
    with TestClient(create_app(dsn=dsn, bulk_limit=4), base_url="http://127.0.0.1") as web:
        post(web, "/jobs/bulk", action="cancel", queue="many")
        run = finished_run(web)
        assert '<td class="num changed">4</td>' in run
        assert "(the bulk limit: run it again for more)" in run


def listen(dsn: str, channel: str) -> tuple[list[str], threading.Event]:
    heard: list[str] = []
    ready = threading.Event()

    def run() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'LISTEN "{channel}"'.encode())
            ready.set()
            for note in conn.notifies(timeout=5, stop_after=1):
                heard.append(note.payload)

    threading.Thread(target=run, daemon=True).start()
    assert ready.wait(5)
    return heard, ready


def test_queue_actions_are_signals_every_node_obeys(dsn: str, web: TestClient) -> None:
    cases = [
        ({"action": "pause"}, {"action": "pause", "queue": "mailers", "ident": "any"}),
        (
            {"action": "scale", "limit": "7", "node": "web-1"},
            {
                "action": "scale",
                "queue": "mailers",
                "limit": 7,
                "node": "web-1",
                "ident": "Oban.web-1",
            },
        ),
    ]
    for form, expected in cases:
        heard, _ = listen(dsn, "public.oban_signal")
        assert post(web, "/queue-actions", queue="mailers", **form).status_code == 303
        for _ in range(100):
            if heard:
                break
            threading.Event().wait(0.05)
        assert [json.loads(p) for p in heard] == [expected]
    bad = web.get(
        post(web, "/queue-actions", queue="mailers", action="scale", limit="0").headers["location"]
    ).text
    assert "The limit must be 1..10000." in bad


def test_the_dashboard_does_not_replace_the_applications_instance(dsn: str) -> None:
    from oban_py import Client

    mine = Client(dsn=dsn)
    try:
        with TestClient(create_app(dsn=dsn), base_url="http://127.0.0.1") as web:
            post(web, "/queue-actions", queue="q", action="pause")
        assert get_instance("Oban") is mine
    finally:
        forget("Oban", mine)


# -- read-only, access -----------------------------------------------------------------------


def test_read_only_shows_no_action_and_refuses_every_post(dsn: str) -> None:
    job_id = insert(dsn, state="discarded", attempt=1, max_attempts=1)
    with TestClient(create_app(dsn=dsn, read_only=True), base_url="http://127.0.0.1") as web:
        page = web.get(f"/jobs/{job_id}").text
        assert "read-only" in page
        assert '<form method="post"' not in page
        assert post(web, f"/jobs/{job_id}/retry").status_code == 403
        assert post(web, "/queue-actions", queue="q", action="pause").status_code == 403
    assert state_of(dsn, job_id) == "discarded"


def test_a_token_guards_pages_and_actions(dsn: str) -> None:
    job_id = insert(dsn)
    with TestClient(create_app(dsn=dsn, token="s3cret-token"), base_url="http://127.0.0.1") as web:
        to_login = web.get("/", follow_redirects=False)
        assert to_login.status_code == 303
        assert to_login.headers["location"].endswith("/login")
        refused = post(web, f"/jobs/{job_id}/cancel")
        assert refused.status_code == 401
        assert state_of(dsn, job_id) == "available"
        bearer = {"authorization": "Bearer s3cret-token"}
        assert web.get("/", headers=bearer).status_code == 200
        wrong = web.post("/login", data={"_csrf": csrf(web), "token": "nope"})
        assert wrong.status_code == 401
        signed_in = web.post(
            "/login", data={"_csrf": csrf(web), "token": "s3cret-token"}, follow_redirects=False
        )
        assert signed_in.status_code == 303
        assert "s3cret-token" not in signed_in.headers["set-cookie"]
        assert web.get("/").status_code == 200
        assert post(web, f"/jobs/{job_id}/cancel").status_code == 303
        assert post(web, "/logout").status_code == 303
        assert web.get("/", follow_redirects=False).status_code == 303
    assert state_of(dsn, job_id) == "cancelled"


def test_basic_auth_prompts_and_checks_credentials(dsn: str) -> None:
    with TestClient(
        create_app(dsn=dsn, basic=("ops", "pa:ss")), base_url="http://127.0.0.1"
    ) as web:
        prompt = web.get("/")
        assert prompt.status_code == 401
        assert prompt.headers["www-authenticate"].startswith("Basic")
        good = base64.b64encode(b"ops:pa:ss").decode()
        assert web.get("/", headers={"authorization": f"Basic {good}"}).status_code == 200
        bad = base64.b64encode(b"ops:wrong").decode()
        assert web.get("/", headers={"authorization": f"Basic {bad}"}).status_code == 401
        assert web.get("/", headers={"authorization": "Basic %%%"}).status_code == 401


def test_the_authorize_hook_decides_for_mounting_apps(dsn: str) -> None:
    job_id = insert(dsn)

    async def only_reads(request: Any) -> bool:
        return bool(request.method == "GET")

    with TestClient(create_app(dsn=dsn, authorize=only_reads), base_url="http://127.0.0.1") as web:
        assert web.get("/").status_code == 200
        assert post(web, f"/jobs/{job_id}/cancel").status_code == 403
    assert state_of(dsn, job_id) == "available"


def test_mounted_under_a_path_every_link_keeps_the_prefix(dsn: str) -> None:
    insert(dsn, queue="mounted")
    dashboard = create_app(dsn=dsn)
    host = Starlette(routes=[Mount("/ops/oban", dashboard)])
    with TestClient(host, base_url="http://127.0.0.1") as web:
        html = web.get("/ops/oban/").text
        assert 'href="/ops/oban/static/dashboard.css"' in html
        assert 'href="/ops/oban/queues/mounted"' in html
        assert web.get("/ops/oban/static/dashboard.js").status_code == 200
        assert web.get("/ops/oban/jobs").status_code == 200
        assert web.portal is not None
        web.portal.call(dashboard.state.dashboard.close)


def test_mounted_in_fastapi_beside_its_own_routes(dsn: str) -> None:
    from fastapi import FastAPI

    from oban_py import Oban

    insert(dsn, state="discarded", attempt=1, max_attempts=1)
    node = Oban(dsn=dsn, peer=False, name="FastApiWeb")
    api = FastAPI()

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"ok": "yes"}

    dashboard = create_app(node)
    api.mount("/admin/jobs", dashboard)
    with TestClient(api, base_url="http://127.0.0.1") as web:
        assert web.get("/health").json() == {"ok": "yes"}
        html = web.get("/admin/jobs/").text
        assert 'href="/admin/jobs/jobs?state=discarded"' in html
        token = csrf(web)
        job_id = ids_on(web.get("/admin/jobs/jobs").text)[0]
        done = web.post(
            f"/admin/jobs/jobs/{job_id}/retry", data={"_csrf": token}, follow_redirects=False
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/admin/jobs/jobs/{job_id}"
        # A mounted app gets no lifespan: the application closes it, then its own node.
        assert web.portal is not None
        web.portal.call(dashboard.state.dashboard.close)
        web.portal.call(node.close)
    assert state_of(dsn, job_id) == "available"


# -- live data, nodes ------------------------------------------------------------------------


def test_live_refresh_reads_counts_once_per_interval_for_any_number_of_viewers(
    dsn: str,
) -> None:
    app = create_app(dsn=dsn, refresh_interval=60.0)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        for _ in range(10):
            assert web.get("/live/overview").status_code == 200
        counts: Shared[Any] = app.state.dashboard.counts
        assert counts.loads == 1


async def test_concurrent_readers_share_one_load() -> None:
    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls

    shared = Shared(slow, ttl=10.0)
    assert await asyncio.gather(*(shared.get() for _ in range(20))) == [1] * 20
    shared.invalidate()
    assert await shared.get() == 2


def gossip_fixture() -> dict[str, Any]:
    notes = json.loads((FIXTURES / "oban_met" / "notifications.json").read_text())
    note = next(n for n in notes if n["channel"] == "public.oban_gossip")
    payload: dict[str, Any] = note["payload"]
    return payload


def test_nodes_come_from_gossip_check_ins_including_elixir_ones(dsn: str) -> None:
    app = create_app(dsn=dsn)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        web.get("/")  # starts listening
        watch: NodeWatch = app.state.dashboard.nodes
        with psycopg.connect(dsn, autocommit=True) as conn:
            notifier.publish_sync(conn, "public", "gossip", [gossip_fixture()])
        for _ in range(100):
            if watch.checks():
                break
            threading.Event().wait(0.05)
        html = web.get("/").text
        assert '<tr data-node="elixir-node-1">' in html
        assert "ex</a> 3 · 0" in html
        queue_page = web.get("/queues/ex").text
        assert '<tr data-node="elixir-node-1">' in queue_page


def test_malformed_check_ins_are_ignored() -> None:
    watch = NodeWatch("postgresql://unused", "public")
    watch.heard_gossip(
        {
            "checks": [
                None,
                1,
                "x",
                {"node": 5},
                {"node": "n", "queue": "q", "limit": True, "running": "no"},
            ]
        }
    )
    watch.heard_gossip({"checks": "not a list"})
    (check,) = watch.checks()
    assert (check.node, check.queue, check.limit, check.running) == ("n", "q", None, 0)


def test_config_name_reaches_signals(dsn: str) -> None:
    # Signals address nodes as "<instance name>.<node>", so the dashboard's name must be the
    # nodes' instance name.
    heard, _ = listen(dsn, "public.oban_signal")
    with TestClient(create_app(dsn=dsn, name="MyApp.Oban"), base_url="http://127.0.0.1") as web:
        post(web, "/queue-actions", queue="q", action="resume", node="n1")
    for _ in range(100):
        if heard:
            break
        threading.Event().wait(0.05)
    assert json.loads(heard[0])["ident"] == "MyApp.Oban.n1"
    assert Config(name="MyApp.Oban", node="n1").ident == "MyApp.Oban.n1"


# -- second round: hosts, sessions, logins, headers, a database away ----------------------------


def test_without_a_login_only_loopback_host_names_are_answered(dsn: str) -> None:
    # DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 sends Host: evil.example.
    job_id = insert(dsn)
    with TestClient(create_app(dsn=dsn), base_url="http://evil.example:8765") as rebound:
        assert rebound.get("/jobs").status_code == 400
        assert rebound.post(f"/jobs/{job_id}/cancel", data={}).status_code == 400
    for host in ("127.0.0.1", "localhost", "[::1]"):
        with TestClient(create_app(dsn=dsn), base_url=f"http://{host}:8765") as local:
            assert local.get("/jobs").status_code == 200
    allowed = create_app(dsn=dsn, allowed_hosts=["jobs.example"])
    with TestClient(allowed, base_url="http://jobs.example") as named:
        assert named.get("/jobs").status_code == 200
    assert state_of(dsn, job_id) == "available"


def test_a_login_session_is_random_expires_and_dies_at_sign_out(dsn: str) -> None:
    with TestClient(
        create_app(dsn=dsn, token="s3cret-token", session_ttl=60), base_url="http://127.0.0.1"
    ) as web:
        cookies = []
        for _ in range(2):
            web.cookies.clear()
            web.post("/login", data={"_csrf": csrf(web), "token": "s3cret-token"})
            cookies.append(web.cookies["oban_web_session"])
        assert cookies[0] != cookies[1], "a new session id on every login"
        stolen = cookies[1]
        assert post(web, "/logout").status_code == 303
        web.cookies.set("oban_web_session", stolen)
        assert web.get("/", follow_redirects=False).status_code == 303, "revoked at sign-out"
    app = create_app(dsn=dsn, token="s3cret-token", session_ttl=60)
    sessions = app.state.dashboard.access.sessions
    now = [1000.0]
    sessions.clock = lambda: now[0]
    with TestClient(app, base_url="http://127.0.0.1") as web:
        web.post("/login", data={"_csrf": csrf(web), "token": "s3cret-token"})
        now[0] += 59.9
        assert web.get("/", follow_redirects=False).status_code == 200, "alive within its ttl"
        now[0] += 0.2
        assert web.get("/", follow_redirects=False).status_code == 303, "expired"


def test_wrong_tokens_are_limited_per_client(dsn: str) -> None:
    with TestClient(create_app(dsn=dsn, token="s3cret-token"), base_url="http://127.0.0.1") as web:
        codes = [
            web.post("/login", data={"_csrf": csrf(web), "token": f"guess-{n}"}).status_code
            for n in range(8)
        ]
        assert codes[:5] == [401] * 5
        assert codes[5:] == [429] * 3
        # Even the right token waits out the minute once the limit is reached.
        right = web.post("/login", data={"_csrf": csrf(web), "token": "s3cret-token"})
        assert right.status_code == 429


def test_cookies_are_secure_over_https_or_behind_a_trusted_proxy(dsn: str) -> None:
    def session_cookie(app: Any, base: str, headers: dict[str, str]) -> str:
        with TestClient(app, base_url=base) as web:
            token = csrf(web)
            done = web.post(
                "/login",
                data={"_csrf": token, "token": "s3cret-token"},
                headers=headers,
                follow_redirects=False,
            )
            return str(done.headers["set-cookie"]).lower()

    plain = create_app(dsn=dsn, token="s3cret-token")
    assert "secure" not in session_cookie(plain, "http://127.0.0.1", {})
    assert "secure" in session_cookie(plain, "https://127.0.0.1", {})
    proto = {"x-forwarded-proto": "https"}
    assert "secure" not in session_cookie(plain, "http://127.0.0.1", proto), "not trusted"
    proxied = create_app(dsn=dsn, token="s3cret-token", trust_forwarded=True)
    assert "secure" in session_cookie(proxied, "http://127.0.0.1", proto)


def test_static_files_and_not_found_pages_send_the_security_headers(web: TestClient) -> None:
    for path in ("/static/dashboard.css", "/no/such/page", "/jobs/999999999"):
        response = web.get(path)
        assert response.headers["x-frame-options"] == "DENY", path
        assert "default-src 'none'" in response.headers["content-security-policy"], path


def test_a_nul_escaped_in_the_args_filter_is_refused_with_a_reason(web: TestClient) -> None:
    response = web.get("/jobs", params={"args": '{"a": "\\u0000"}'})
    assert response.status_code == 400
    assert "NUL" in response.text
    assert "unsupported Unicode escape" not in response.text


def test_with_the_database_away_a_page_answers_within_the_statement_timeout() -> None:
    # Nothing listens on port 1: every connection attempt fails at once, so the pool never
    # fills and a read waits for a connection until the timeout.
    app = create_app(dsn="postgresql://postgres@127.0.0.1:1/none", statement_timeout=1.0)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        started = time.monotonic()
        response = web.get("/jobs")
        waited = time.monotonic() - started
    assert response.status_code == 503
    assert "127.0.0.1" not in response.text
    assert "connection" not in response.text.lower()
    assert waited < 10


def test_five_tabs_on_a_queue_page_cost_what_one_does(dsn: str) -> None:
    insert(dsn, queue="tabs")
    app = create_app(dsn=dsn, refresh_interval=60.0)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        for _ in range(5):
            assert web.get("/live/queues/tabs").status_code == 200
        assert app.state.dashboard.recent.loads == 1
        assert app.state.dashboard.counts.loads == 1


def test_five_tabs_on_the_live_job_list_cost_what_one_does(dsn: str) -> None:
    ids = [insert(dsn, queue="tabs") for _ in range(2)]
    insert(dsn, queue="other")
    app = create_app(dsn=dsn, refresh_interval=60.0)
    dashboard = app.state.dashboard
    with TestClient(app, base_url="http://127.0.0.1") as web:
        for _ in range(5):
            assert ids_on(web.get("/live/jobs?queue=tabs").text) == ids[::-1]
        assert dashboard.first_pages.loads == 1
        assert dashboard.counts.loads == 1
        # Another filter is another list, read once for its own tabs.
        for _ in range(5):
            assert web.get("/live/jobs?queue=other").status_code == 200
        assert dashboard.first_pages.loads == 2
        assert dashboard.counts.loads == 1


def test_the_workflow_page_draws_each_step_with_its_state(web: TestClient, dsn: str) -> None:
    from oban_py import Worker
    from oban_py.client.core import Client
    from oban_py.workflows import Workflow

    class Step(Worker):
        name = "Py.Web.WfStep"

    client = Client(dsn=dsn, name="wf-web")
    wf = Workflow()
    wf.add("extract", Step.new({})).add("shop_0", Step.new({}), deps="extract")
    wf.add("shop_1", Step.new({}), deps="extract")
    wf.add("report", Step.new({}), deps=["shop_0", "shop_1"], wait_for="approved")
    jobs = wf.enqueue_sync(client)
    client.close_sync()
    page = web.get(f"/workflows/{wf.workflow_id}")
    assert page.status_code == 200
    steps = dict(re.findall(r'data-step="([^"]+)" data-state="([^"]+)"', page.text))
    assert steps == {
        "extract": "available",
        "shop_0": "suspended",
        "shop_1": "suspended",
        "report": "suspended",
    }
    assert page.text.count("<line ") == 4
    assert "the message <code>approved</code>" in page.text
    job_page = web.get(f"/jobs/{jobs[3].id}")
    assert f'href="/workflows/{wf.workflow_id}"' in job_page.text
    assert web.get("/workflows/none-such").status_code == 404


# -- the job list at scale, its filters and sorts --------------------------------------------


def seed(dsn: str, rows: int) -> None:
    """``rows`` jobs in one statement: workers MyApp.Workers.W0..W9, every 7th tagged vip."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_jobs (queue, worker, args, tags) "
            "SELECT 'default', 'MyApp.Workers.W' || (i %% 10), jsonb_build_object('n', i), "
            "CASE WHEN i %% 7 = 0 THEN ARRAY['vip'] ELSE ARRAY['std'] END "
            "FROM generate_series(1, %s) AS i",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE oban_jobs")


def test_worker_and_tag_filters_read_a_window_of_ids_not_every_row(dsn: str) -> None:
    seed(dsn, 20_000)
    app = create_app(dsn=dsn, scan=2_000)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        reads = app.state.dashboard.reads
        for query in ("worker=Nobody", "tags=nobody", "args=no-such-text", "priority=5"):
            reads.plans = []
            html = web.get("/jobs?" + query).text
            assert ids_on(html) == []
            assert "No jobs match among ids 18,001 to 20,000." in html
            assert [rows_read(plan) for plan in reads.plans] == [2_000], query
            # The next window is one click away, and reads as little.
            older = re.search(r'rel="next" href="([^"]+)"', html)
            assert older is not None
            reads.plans = []
            next_window = web.get(older.group(1).replace("&amp;", "&")).text
            assert "among ids 16,001 to 18,000" in next_window
            assert [rows_read(plan) for plan in reads.plans] == [2_000]
        # Sorts by a timestamp no index orders read one window too, whatever the cursor says.
        for query in ("sort=completed", "sort=scheduled&floor=1&key=-infinity%7C99999999"):
            reads.plans = []
            assert web.get("/jobs?" + query).status_code == 200
            assert [rows_read(plan) for plan in reads.plans] == [2_000], query
        # An indexed filter is not windowed: the state/queue index serves it.
        reads.plans = []
        assert ids_on(web.get("/jobs?state=discarded").text) == []
        assert rows_read(reads.plans[0]) == 0


def test_the_worker_filter_matches_the_last_segments_of_a_dotted_name(
    dsn: str, web: TestClient
) -> None:
    mailer = insert(dsn, worker="MyApp.Workers.Mailer")
    other = insert(dsn, worker="MyApp.Workers.NotMailer")
    bare = insert(dsn, worker="Mailer")
    assert ids_on(web.get("/jobs?worker=Mailer").text) == [bare, mailer]
    assert ids_on(web.get("/jobs?worker=Workers.Mailer").text) == [mailer]
    assert ids_on(web.get("/jobs?worker=MyApp.Workers.NotMailer").text) == [other]
    assert ids_on(web.get("/jobs?worker=ailer").text) == []


def test_the_job_list_filters_by_node_priority_attempt_and_time_range(
    dsn: str, web: TestClient
) -> None:
    on_a = insert(dsn, attempted_by=["node-a", "uuid-1"], attempt=1, state="retryable")
    on_b = insert(dsn, attempted_by=["node-b", "uuid-2"], attempt=2, state="retryable")
    urgent = insert(dsn, priority=0, inserted_at="2026-01-01T10:00:00")
    late = insert(dsn, priority=3, inserted_at="2026-01-01T12:00:00")

    def listed(query: str) -> list[int]:
        response = web.get("/jobs?" + query)
        assert response.status_code == 200, response.text
        return ids_on(response.text)

    assert listed("node=node-a") == [on_a]
    assert listed("attempt=2") == [on_b]
    assert listed("priority=3") == [late]
    assert listed("since=2026-01-01T09:00&until=2026-01-01T11:00") == [urgent]
    assert listed("since=2026-01-01T11:00&until=2026-01-01T13:00&priority=3") == [late]
    assert 'value="node-a"' in web.get("/jobs?node=node-a").text


def test_the_job_list_sorts_by_each_timestamp_with_keyset_pages(dsn: str) -> None:
    # Inserted in id order, scheduled in the reverse order; one never attempted.
    ids = [
        insert(dsn, scheduled_at=f"2026-01-{day:02d}T00:00:00", attempted_at=f"2026-02-{day:02d}")
        for day in range(1, 8)
    ]
    never = insert(dsn, scheduled_at="2025-12-01", attempted_at=None)
    with TestClient(create_app(dsn=dsn, page_size=3), base_url="http://127.0.0.1") as web:
        seen: list[int] = []
        link: str | None = "/jobs?sort=scheduled"
        while link is not None:
            html = web.get(link).text
            seen += ids_on(html)
            found = re.search(r'rel="next" href="([^"]+)"', html)
            link = found.group(1).replace("&amp;", "&") if found else None
        assert seen == [*ids[::-1], never]  # latest scheduled first
        attempted = ids_on(web.get("/jobs?sort=attempted").text)
        assert attempted == ids[::-1][:3]
        assert ids_on(web.get("/jobs?sort=completed").text) == [never, *ids[::-1]][:3]
        # A cursor that is no cursor starts from the top again.
        assert ids_on(web.get("/jobs?sort=scheduled&key=garbage%7Cx").text) == ids[::-1][:3]


def test_the_job_list_shows_totals_with_thousands_separators(dsn: str, web: TestClient) -> None:
    seed(dsn, 1_234)
    html = web.get("/jobs").text
    assert "<strong>1,234</strong> jobs in all." in html
    assert "available (1,234)" in html
    assert "<strong>1,234</strong> jobs match." in web.get("/jobs?state=available").text
    overview = web.get("/").text
    assert '<span class="n">1,234</span>' in overview
    assert '<td class="num" data-state="available">1,234</td>' in overview


def test_the_bulk_confirm_counts_the_matching_jobs_or_estimates_at_scale(dsn: str) -> None:
    for _ in range(5):
        insert(dsn, queue="five")
    seed(dsn, 2_000)  # workers MyApp.Workers.W0..W9 in turn
    app = create_app(dsn=dsn, bulk_limit=3, scan=100)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        assert web.get("/jobs/count?queue=five&state=available").json()["text"] == "at least 3"
        assert web.get("/jobs/count?queue=none").json() == {
            "count": 0,
            "how": "exact",
            "text": "0",
            "note": "",
        }
        # Unindexed conditions are counted among the newest `scan` ids and scaled up.
        reads = app.state.dashboard.reads
        reads.plans = []
        # 10 of the newest 100 of 2,005 ids: about 200 in all.
        assert web.get("/jobs/count?worker=W3").json() == {
            "count": 200,
            "how": "estimated",
            "text": "about 200",
            "note": " (estimated from the newest 100 jobs)",
        }
        assert [rows_read(plan) for plan in reads.plans] == [100]
        assert web.get("/jobs/count?priority=x").status_code == 400
        html = web.get("/jobs?queue=five").text
        assert 'data-confirm="Cancel {n} jobs matching this filter{note}?"' in html
        assert 'data-count-url="/jobs/count?queue=five&amp;action=cancel"' in html
        # Counted are the jobs the action changes: cancel and retry leave completed jobs alone.
        insert(dsn, queue="mixed", state="completed")
        insert(dsn, queue="mixed", state="executing")
        insert(dsn, queue="mixed", state="available")

        def count(query: str) -> str:
            return str(web.get("/jobs/count?queue=mixed&" + query).json()["text"])

        assert [count("action=cancel"), count("action=retry"), count("action=delete")] == [
            "2",
            "1",
            "2",
        ]
        assert count("") == "at least 3"


def test_a_confirm_count_on_a_queue_reads_only_the_jobs_it_counts(dsn: str) -> None:
    # 20,000 completed jobs beside 30 a cancel or retry would change: the state/queue index
    # must find the 30 whatever the action, never the table.
    seed(dsn, 20_000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE oban_jobs SET state = 'completed', queue = 'busy'")
        conn.execute(
            "INSERT INTO oban_jobs (queue, worker, state) SELECT 'busy', 'W', "
            "(ARRAY['available', 'scheduled', 'retryable'])[1 + i % 3]::oban_job_state "
            "FROM generate_series(1, 30) AS i"
        )
        conn.execute("VACUUM ANALYZE oban_jobs")
    app = create_app(dsn=dsn)
    with TestClient(app, base_url="http://127.0.0.1") as web:
        reads = app.state.dashboard.reads
        for action, changed in (("cancel", 30), ("retry", 20_020)):
            reads.plans = []
            found = web.get(f"/jobs/count?queue=busy&action={action}").json()
            assert found["count"] == changed, action
            assert [rows_read(plan) for plan in reads.plans] == [changed], action


def test_a_confirm_counts_the_jobs_in_every_state_its_action_changes(
    dsn: str, web: TestClient
) -> None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT enum_range(NULL::oban_job_state)::text[]").fetchone()
    assert row is not None
    for action in ("cancel", "retry", "delete"):
        queue = f"every-{action}"
        ids = [insert(dsn, queue=queue, state=state) for state in row[0]]
        counted = web.get(f"/jobs/count?queue={queue}&action={action}").json()["count"]
        before = [state_of(dsn, i) for i in ids]
        for job_id in ids:
            post(web, f"/jobs/{job_id}/{action}")
        # What the client's own action changed, one job at a time (None: deleted).
        after = [state_of(dsn, i) for i in ids]
        changed = sum(b != a for b, a in zip(before, after, strict=True))
        assert counted == changed, (action, before, after)


def test_selected_rows_are_acted_on_and_nothing_else(dsn: str, web: TestClient) -> None:
    chosen = [insert(dsn, queue="sel") for _ in range(3)]
    spared = insert(dsn, queue="sel")
    done = post(web, "/jobs/selected", action="cancel", id=chosen, queue="sel")
    assert done.status_code == 303
    assert done.headers["location"].endswith("/jobs?queue=sel")
    assert "Cancelled 3 of 3 selected jobs." in web.get(done.headers["location"]).text
    assert [state_of(dsn, i) for i in chosen] == ["cancelled"] * 3
    assert state_of(dsn, spared) == "available"
    for hostile in (["1; DELETE"], ["-1"], ["9" * 30], [], ["\u0661"]):
        refused = post(web, "/jobs/selected", action="delete", id=hostile)
        assert refused.status_code == 303
    assert post(web, "/jobs/selected", action="drop", id=[spared]).status_code == 303
    assert state_of(dsn, spared) == "available"


def test_a_bulk_action_runs_in_the_background_and_shows_its_progress(dsn: str) -> None:
    jobs = [insert(dsn, queue="slow") for _ in range(3)]
    held = threading.Event()
    release = threading.Event()

    def hold_a_row() -> None:
        # A worker's transaction holding one of the rows: the bulk batch waits for it.
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1 FROM oban_jobs WHERE id = %s FOR UPDATE", (jobs[1],))
            held.set()
            release.wait(15)

    holder = threading.Thread(target=hold_a_row, daemon=True)
    holder.start()
    held.wait(5)
    with TestClient(create_app(dsn=dsn), base_url="http://127.0.0.1") as web:
        started = post(web, "/jobs/bulk", action="cancel", queue="slow")
        assert started.status_code == 303
        # The request answered while the batch still waits on the row lock.
        assert 'data-state="running"' in web.get("/live/bulk").text
        assert state_of(dsn, jobs[0]) == "available"
        # One run at a time: the pages keep their connections.
        second = post(web, "/jobs/bulk", action="delete", queue="slow")
        assert (
            "Cancel #1 is still running: wait for it." in web.get(second.headers["location"]).text
        )
        release.set()
        run = finished_run(web)
        assert '<td class="num changed">3</td>' in run
    assert [state_of(dsn, i) for i in jobs] == ["cancelled"] * 3
    holder.join()


def test_a_bulk_run_stopped_mid_way_leaves_each_batch_done_or_untouched(dsn: str) -> None:
    seed(dsn, 2_500)
    ((blocked,),) = psycopg.connect(dsn).execute("SELECT min(id) + 1500 FROM oban_jobs").fetchall()
    held = threading.Event()
    release = threading.Event()

    def hold_a_row() -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1 FROM oban_jobs WHERE id = %s FOR UPDATE", (blocked,))
            held.set()
            release.wait(15)

    holder = threading.Thread(target=hold_a_row, daemon=True)
    holder.start()
    held.wait(5)
    try:
        with TestClient(create_app(dsn=dsn), base_url="http://127.0.0.1") as web:
            post(web, "/jobs/bulk", action="cancel", state="available")
            dashboard = web.app.state.dashboard  # type: ignore[attr-defined]
            deadline = time.monotonic() + 10
            while dashboard.bulk.runs()[0].seen < 1_000 and time.monotonic() < deadline:
                time.sleep(0.05)
            # The dashboard goes away while its second batch waits: that batch is rolled back.
    finally:
        release.set()
        holder.join()
    with psycopg.connect(dsn) as conn:
        states = dict(conn.execute("SELECT state::text, count(*) FROM oban_jobs GROUP BY 1"))
    assert states == {"cancelled": 1_000, "available": 1_500}
