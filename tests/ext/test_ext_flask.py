"""Flask: jobs commit or roll back with the request, tested with the sync testing helpers, inline
jobs run once the request has committed, and ``flask oban ...`` uses the app's settings."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from flask import Flask, abort
from oban_py_ext.flask import ObanFlask

from oban_py import Client, Job, Worker
from oban_py.testing import (
    TestingClient,
    assert_enqueued_sync,
    drain_queue_sync,
    refute_enqueued_sync,
)

receipts: list[tuple[int, bool]] = []


class Receipt(Worker):
    """Reads the order its request inserted: it must exist when the job runs."""

    name = "Py.Ext.Flask.Receipt"
    queue = "receipts"
    dsn = ""

    def process(self, job: Job) -> None:
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute("SELECT 1 FROM orders WHERE id = %s", [job.args["order"]])
            receipts.append((job.args["order"], row.fetchone() is not None))
        if job.args.get("explode"):
            raise RuntimeError("printer on fire")


oban = ObanFlask()


def create_app(dsn: str, app: Flask | None = None) -> Flask:
    """An app factory, as a Flask shop writes one (on ``app`` when it made the app itself, with
    hooks of its own registered before ``init_app``)."""
    app = app or Flask(__name__)
    app.config["OBAN_DSN"] = dsn
    app.config["OBAN_NAME"] = "FlaskShop"
    oban.init_app(app)

    @app.post("/orders/<int:order>")
    def create_order(order: int) -> tuple[dict[str, Any], int]:
        conn = oban.connection()
        conn.execute("INSERT INTO orders (id) VALUES (%s)", [order])
        job = Receipt.enqueue_sync(
            {"order": order, "explode": "explode" in app.config}, conn, oban="FlaskShop"
        )
        if order >= 900:
            abort(409)
        if order >= 800:
            raise RuntimeError("the view failed after enqueueing")
        return {"job": job.id}, 201

    @app.get("/health")
    def health() -> str:
        return "ok"

    return app


@pytest.fixture
def shop(dsn: str) -> str:
    receipts.clear()
    Receipt.dsn = dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    return dsn


def rows(dsn: str, text: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(text.encode()).fetchall()


def test_the_job_commits_with_the_order_and_rolls_back_with_a_failed_request(shop: str) -> None:
    app = create_app(shop)
    client = app.test_client()
    try:
        assert client.post("/orders/1").status_code == 201
        assert client.post("/orders/901").status_code == 409  # abort() after the enqueue
        assert client.post("/orders/801").status_code == 500  # raised after the enqueue
        assert client.get("/health").text == "ok"  # no connection taken at all
    finally:
        app.extensions["oban"].owned.close_sync()
    assert rows(shop, "SELECT id FROM orders") == [(1,)]
    assert rows(shop, "SELECT args->>'order' FROM oban_jobs") == [("1",)]


def test_a_commit_that_fails_is_a_500_not_a_success(shop: str) -> None:
    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE seats (n int UNIQUE DEFERRABLE INITIALLY DEFERRED)"
        )  # checked at commit, after the view returned
    app = create_app(shop)

    @app.post("/seats")
    def book() -> tuple[str, int]:
        conn = oban.connection()
        conn.execute("INSERT INTO seats VALUES (1), (1)")
        oban.enqueue(Receipt.new({"order": 1}))
        return "booked", 201

    try:
        assert app.test_client().post("/seats").status_code == 500
    finally:
        app.extensions["oban"].owned.close_sync()
    assert rows(shop, "SELECT count(*) FROM oban_jobs") == [(0,)]


def test_every_request_gives_its_connection_back(shop: str) -> None:
    app = create_app(shop)
    client = app.test_client()
    try:
        for order in (1, 901, 801, 2, 902, 802):
            client.post(f"/orders/{order}")
        owned: Client = app.extensions["oban"].owned
        with owned.connection_sync() as conn:
            stats = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND state LIKE 'idle in%'"
            )
            assert stats.fetchone() == (0,)  # no transaction left open by a request
        pool = owned._sync.get()
        assert pool.get_stats()["pool_size"] - pool.get_stats()["pool_available"] == 0
    finally:
        app.extensions["oban"].owned.close_sync()


def test_manual_mode_with_the_sync_helpers(shop: str) -> None:
    app = create_app(shop)
    testing = TestingClient("manual", dsn=shop, name="FlaskShop")
    try:
        client = app.test_client()
        client.post("/orders/7")
        client.post("/orders/907")

        assert_enqueued_sync(testing, worker=Receipt, args={"order": 7})
        refute_enqueued_sync(testing, worker=Receipt, args={"order": 907})
        assert drain_queue_sync(testing, "receipts")["completed"] == 1
        assert receipts == [(7, True)]
    finally:
        testing.close_sync()
        app.extensions["oban"].owned.close_sync()


def test_inline_mode_runs_the_job_once_the_request_committed(shop: str) -> None:
    app = create_app(shop)
    testing = TestingClient("inline", dsn=shop, name="FlaskShop")
    try:
        client = app.test_client()
        assert client.post("/orders/3").status_code == 201
        # It ran when the request ended, and saw the order its request inserted.
        assert receipts == [(3, True)]
        assert [j.state for j in testing.performed] == ["completed"]

        assert client.post("/orders/903").status_code == 409
        assert client.post("/orders/803").status_code == 500
        assert receipts == [(3, True)]  # rolled back: never ran

        app.config["explode"] = True
        assert client.post("/orders/4").status_code == 500  # the job's error, as inline does
        assert rows(shop, "SELECT id FROM orders ORDER BY id") == [(3,), (4,)]
    finally:
        testing.close_sync()
        app.extensions["oban"].owned.close_sync()


def test_after_a_testing_client_closes_the_apps_own_client_serves_again(shop: str) -> None:
    app = create_app(shop)
    testing = TestingClient("manual", dsn=shop, name="FlaskShop")
    try:
        client = app.test_client()
        assert client.post("/orders/11").status_code == 201
        testing.close_sync()  # as a test's finally does
        assert client.post("/orders/12").status_code == 201
        with app.app_context():
            assert oban.client is app.extensions["oban"].owned
    finally:
        testing.close_sync()
        app.extensions["oban"].owned.close_sync()
    assert rows(shop, "SELECT args->>'order' FROM oban_jobs ORDER BY id") == [("11",), ("12",)]


def test_a_hook_that_fails_the_response_after_the_view_leaves_no_job(shop: str) -> None:
    # A hook registered before init_app runs after the ones registered later: the request's
    # commit must still come last, or a response that ends as a 500 would leave its job.
    app = Flask(__name__)

    @app.after_request
    def audit(response: Any) -> Any:
        if response.status_code == 201:
            raise RuntimeError("the audit log is down")
        return response

    create_app(shop, app)
    try:
        assert app.test_client().post("/orders/21").status_code == 500
    finally:
        app.extensions["oban"].owned.close_sync()
    assert rows(shop, "SELECT count(*) FROM oban_jobs") == [(0,)]
    assert rows(shop, "SELECT count(*) FROM orders") == [(0,)]


def test_init_app_needs_a_dsn_or_a_client() -> None:
    app = Flask(__name__)
    app.config["OBAN_NAME"] = "FlaskNowhere"
    with pytest.raises(RuntimeError, match="OBAN_DSN"):
        ObanFlask(app)


def test_flask_oban_commands_use_the_apps_database(
    shop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/elsewhere")
    monkeypatch.delenv("OBAN_DSN", raising=False)
    app = create_app(shop)
    try:
        app.test_client().post("/orders/5")
        runner = app.test_cli_runner()

        listed = runner.invoke(args=["oban", "jobs", "--json"])
        assert listed.exit_code == 0, listed.output
        assert "Py.Ext.Flask.Receipt" in listed.output

        version = runner.invoke(args=["oban", "schema-version"])
        assert version.exit_code == 0, version.output
        assert version.output.strip() == "14"

        helped = runner.invoke(args=["oban", "--help"])
        assert "Usage: flask oban" in helped.output

        paused = runner.invoke(args=["oban", "pause", "receipts"])
        assert paused.exit_code == 0, paused.output
        assert "Sent pause" in paused.output
    finally:
        app.extensions["oban"].owned.close_sync()
