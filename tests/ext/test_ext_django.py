"""Django: a real project (settings configured here) on a database of its own, migrated by
Django, so the app's migration is what installs the schema."""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Iterator
from datetime import UTC
from itertools import pairwise
from typing import Any

import django
import psycopg
import pytest
from conftest import create_database, drop_database, dsn_for
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import connections, transaction
from django.test import override_settings
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from oban_py import Job, Oban
from oban_py.schema import CURRENT_VERSION

#: Django's own connections in these tests, told apart from the node's on the server, and from
#: those of the same tests in another process (pytest-xdist workers share the server).
DJANGO_APP = f"django-under-test-{os.getpid()}"


@pytest.fixture(scope="module")
def project(server_dsn: str) -> Iterator[str]:
    """The project's database DSN, after ``manage.py migrate``; the alias ``jobs`` is a second
    database with the schema (for jobs routed away from the app's data)."""
    name = create_database(server_dsn)
    jobs_name = create_database(server_dsn)
    params = conninfo_to_dict(server_dsn)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": params.get("user", "postgres"),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", "127.0.0.1"),
        "PORT": params.get("port", "5432"),
        "OPTIONS": {"application_name": DJANGO_APP},
    }
    tuned = {
        **database,
        "OPTIONS": {"application_name": "oban-tuned", "options": "-c statement_timeout=5000"},
    }
    strict = {**database, "OPTIONS": {"sslmode": "verify-full"}}
    lite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    # Django's own pool, smaller than the node's thread count.
    pooled = {
        **database,
        "OPTIONS": {**database["OPTIONS"], "pool": {"min_size": 1, "max_size": 2, "timeout": 5}},
    }
    jobs_database = {**database, "NAME": jobs_name}
    if settings.configured:
        settings.DATABASES["default"].update(database)
        settings.DATABASES["jobs"] = jobs_database
    else:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="oban-py-ext-tests",
            ALLOWED_HOSTS=["testserver"],
            USE_TZ=True,
            TIME_ZONE="Asia/Tokyo",
            DATABASES={
                "default": database,
                "tuned": tuned,
                "strict": strict,
                "lite": lite,
                "pooled": pooled,
                "jobs": jobs_database,
            },
            INSTALLED_APPS=[
                "django.contrib.admin",
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
                "django.contrib.messages",
                "oban_py_ext.django",
            ],
            MIDDLEWARE=[
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
            ],
            ROOT_URLCONF="django_test_urls",
            TEMPLATES=[
                {
                    "BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True,
                    "OPTIONS": {
                        "context_processors": [
                            "django.template.context_processors.request",
                            "django.contrib.auth.context_processors.auth",
                            "django.contrib.messages.context_processors.messages",
                        ]
                    },
                }
            ],
            OBAN={"queues": {"mail": 2}, "peer": False, "workers": ["django_test_workers"]},
        )
        django.setup()
    call_command("migrate", verbosity=0)
    from oban_py import schema

    with psycopg.connect(dsn_for(server_dsn, jobs_name), autocommit=True) as conn:
        conn.execute(schema.install_sql().encode())
    yield dsn_for(server_dsn, name)
    connections.close_all()
    drop_database(server_dsn, name)
    drop_database(server_dsn, jobs_name)


def jobs(dsn: str, worker: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(b"SELECT row_to_json(j) FROM oban_jobs j WHERE worker = %s", [worker])
        return [row[0] for row in cur.fetchall()]


def test_migrate_installs_the_current_schema(project: str) -> None:
    out = io.StringIO()
    call_command("oban", "version", stdout=out)
    assert out.getvalue().strip() == str(CURRENT_VERSION)
    call_command("oban", "install", stdout=out)
    assert f"already at version {CURRENT_VERSION}" in out.getvalue()


def test_enqueue_inside_atomic_rolls_back_with_it(project: str) -> None:
    from oban_py_ext.django import enqueue

    class Boom(Exception):
        pass

    inserted: list[Job] = []

    def signup() -> None:
        with transaction.atomic():
            inserted.append(enqueue(Job(worker="Py.Ext.Django.RolledBack", args={"n": 1})))
            raise Boom

    with pytest.raises(Boom):
        signup()
    assert inserted[0].id is not None
    assert inserted[0].args == {"n": 1}
    assert jobs(project, "Py.Ext.Django.RolledBack") == []


def test_enqueue_inside_atomic_commits_with_it(project: str) -> None:
    from oban_py_ext.django import enqueue, enqueue_many

    with transaction.atomic():
        enqueue(Job(worker="Py.Ext.Django.Committed", args={"n": 1}, meta={"m": True}))
        assert jobs(project, "Py.Ext.Django.Committed") == []  # not visible before commit
        enqueue_many([Job(worker="Py.Ext.Django.Committed", args={"n": 2})])
    found = jobs(project, "Py.Ext.Django.Committed")
    assert sorted(j["args"]["n"] for j in found) == [1, 2]
    assert {j["state"] for j in found} == {"available"}


def test_a_large_batch_copies_inside_atomic_and_rolls_back_with_it(project: str) -> None:
    from oban_py_ext.django import enqueue_many

    from oban_py.insert.planner import COPY_AT

    class Boom(Exception):
        pass

    batch = [Job(worker="Py.Ext.Django.Copied", args={"n": n}) for n in range(COPY_AT)]

    def signup() -> None:
        with transaction.atomic():
            enqueue_many(batch)
            raise Boom

    with pytest.raises(Boom):
        signup()
    assert jobs(project, "Py.Ext.Django.Copied") == []
    with transaction.atomic():
        inserted = enqueue_many(batch)
    found = jobs(project, "Py.Ext.Django.Copied")
    assert sorted((j["id"], j["args"]["n"]) for j in found) == [
        (job.id, job.args["n"]) for job in inserted
    ]


# -- jobs on another database than the caller's atomic() block --------------------------------


def _jobs_dsn(project: str) -> str:
    return make_conninfo(project, dbname=connections["jobs"].settings_dict["NAME"])


#: Jobs routed to the ``jobs`` database, as a router sending ``oban_py`` there would.
ON_JOBS = {"database": "jobs", "peer": False}


def test_enqueue_inside_another_databases_atomic_waits_for_its_commit(project: str) -> None:
    from django.contrib.auth.models import Group
    from oban_py_ext.django import enqueue

    class Declined(Exception):
        pass

    def failing_view() -> None:
        with transaction.atomic():  # the default database: the app's data
            Group.objects.create(name="order-that-never-was")
            enqueue(Job(worker="Py.Ext.Django.Routed", args={"n": 1}))
            raise Declined

    with override_settings(OBAN=ON_JOBS):
        with pytest.raises(Declined):
            failing_view()
        # Before: the job committed on its own connection and outlived the rollback.
        assert jobs(_jobs_dsn(project), "Py.Ext.Django.Routed") == []

        with transaction.atomic():
            Group.objects.create(name="order-42")
            held = enqueue(Job(worker="Py.Ext.Django.Routed", args={"n": 2}))
            assert held.id is None  # not inserted yet: it waits for the commit
            assert jobs(_jobs_dsn(project), "Py.Ext.Django.Routed") == []
        assert [j["args"] for j in jobs(_jobs_dsn(project), "Py.Ext.Django.Routed")] == [{"n": 2}]


def test_enqueue_inside_both_databases_atomic_joins_the_jobs_transaction(project: str) -> None:
    from oban_py_ext.django import enqueue

    with override_settings(OBAN=ON_JOBS), transaction.atomic(), transaction.atomic(using="jobs"):
        job = enqueue(Job(worker="Py.Ext.Django.Both"))
        assert job.id is not None
    assert len(jobs(_jobs_dsn(project), "Py.Ext.Django.Both")) == 1


def test_enqueue_inside_another_databases_atomic_can_refuse_loudly(project: str) -> None:
    from django.db.transaction import TransactionManagementError
    from oban_py_ext.django import enqueue

    def view() -> None:
        with transaction.atomic():
            enqueue(Job(worker="Py.Ext.Django.Refused"))

    with (
        override_settings(OBAN={**ON_JOBS, "other_database": "raise"}),
        pytest.raises(TransactionManagementError, match=r"atomic\(\) block of 'default'.*'jobs'"),
    ):
        view()
    assert jobs(_jobs_dsn(project), "Py.Ext.Django.Refused") == []


# -- inline testing mode waits for the caller's commit -----------------------------------------


class SeesItsOrder(Exception):
    pass


def test_inline_mode_runs_the_job_when_the_callers_block_commits(project: str) -> None:
    from django.contrib.auth.models import Group
    from oban_py_ext.django import enqueue
    from oban_py_ext.django.testing import oban_mode

    from oban_py import Worker

    seen: list[bool] = []

    class Confirm(Worker):
        name = "Py.Ext.Django.InlineConfirm"

        def process(self, job: Job) -> None:
            seen.append(Group.objects.filter(name=job.args["group"]).exists())

    with oban_mode("inline") as client:
        with transaction.atomic():
            Group.objects.create(name="inline-order")
            enqueue(Confirm.new({"group": "inline-order"}))
            assert client.performed == []  # held: production runs nothing before the commit
        assert [j.state for j in client.performed] == ["completed"]
        assert seen == [True]

        def rolled_back() -> None:
            with transaction.atomic():
                enqueue(Confirm.new({"group": "rolled-back"}))
                raise SeesItsOrder

        with pytest.raises(SeesItsOrder):
            rolled_back()
        assert len(client.performed) == 1  # a rolled-back job never runs
    Group.objects.filter(name="inline-order").delete()


def test_inline_mode_job_failure_does_not_roll_the_caller_back(project: str) -> None:
    from django.contrib.auth.models import Group
    from oban_py_ext.django import enqueue
    from oban_py_ext.django.testing import oban_mode

    from oban_py import Worker

    class Explodes(Worker):
        name = "Py.Ext.Django.InlineExplodes"

        def process(self, job: Job) -> None:
            raise SeesItsOrder("the job failed")

    def view() -> None:
        with transaction.atomic():
            Group.objects.create(name="kept-order")
            enqueue(Explodes.new({}))

    # raise_errors (the default) still reports the failure, after the commit.
    with oban_mode("inline"), pytest.raises(SeesItsOrder):
        view()
    assert Group.objects.filter(name="kept-order").exists()
    Group.objects.filter(name="kept-order").delete()


def test_enqueue_follows_a_testing_mode_block_over_the_clients_own_mode(project: str) -> None:
    from oban_py_ext.django import enqueue
    from oban_py_ext.django.testing import oban_mode

    from oban_py import Worker, testing

    class ModeBlock(Worker):
        name = "Py.Ext.Django.ModeBlock"

        def process(self, job: Job) -> None:
            pass

    with oban_mode("disabled") as client:
        with testing.mode("inline"):
            done = enqueue(ModeBlock.new({"n": 1}))
        assert [j.state for j in client.performed] == ["completed"]
        assert done.state == "completed"
    assert jobs(project, "Py.Ext.Django.ModeBlock") == []
    with oban_mode("inline") as client, testing.mode("manual"):
        enqueue(ModeBlock.new({"n": 2}))
        assert client.performed == []
    assert len(jobs(project, "Py.Ext.Django.ModeBlock")) == 1


def test_enqueue_outside_atomic_commits_at_once(project: str) -> None:
    from oban_py_ext.django import enqueue

    enqueue(Job(worker="Py.Ext.Django.Autocommit"))
    assert len(jobs(project, "Py.Ext.Django.Autocommit")) == 1


def test_enqueue_through_djangos_cursor_runs_the_insert_middleware(project: str) -> None:
    from oban_py_ext.django import enqueue, enqueue_many

    from oban_py.middleware import (
        InsertNext,
        InsertNextSync,
        Middleware,
        add_middleware,
        remove_middleware,
    )

    seen: list[int] = []

    class Stamp(Middleware):
        async def insert(self, jobs: list[Job], call_next: InsertNext) -> list[Job]:
            raise AssertionError("Django's enqueue is sync")

        def insert_sync(self, jobs: list[Job], call_next: InsertNextSync) -> list[Job]:
            seen.append(len(jobs))
            return call_next([j.model_copy(update={"meta": {"stamped": 1}}) for j in jobs])

    add_middleware("test.django.stamp", Stamp())
    try:
        one = enqueue(Job(worker="Py.Ext.Django.Stamped"))
        many = enqueue_many([Job(worker="Py.Ext.Django.Stamped")] * 2)
    finally:
        remove_middleware("test.django.stamp")
    assert seen == [1, 2]
    assert [j.meta for j in [one, *many]] == [{"stamped": 1}] * 3
    assert [j["meta"] for j in jobs(project, "Py.Ext.Django.Stamped")] == [{"stamped": 1}] * 3


def test_enqueue_goes_through_djangos_cursor_so_its_query_tooling_sees_it(project: str) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from oban_py_ext.django import enqueue

    wrapped: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        wrapped.append(sql)
        return execute(sql, params, many, context)

    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(wrapper):
        job = enqueue(Job(worker="Py.Ext.Django.Seen", args={"n": 1}))
    assert job.id is not None
    assert any(
        "INSERT INTO" in q["sql"] and "oban_jobs" in q["sql"] for q in captured.captured_queries
    )
    assert any("oban_jobs" in sql for sql in wrapped)


def test_unique_jobs_through_djangos_cursor_find_their_duplicate(project: str) -> None:
    from oban_py_ext.django import enqueue

    with transaction.atomic():
        first = enqueue(
            Job(
                worker="Py.Ext.Django.Unique",
                args={"id": 123456789012345678901234567890},
                unique={"period": 60},
            )
        )
        again = enqueue(
            Job(
                worker="Py.Ext.Django.Unique",
                args={"id": 123456789012345678901234567890},
                unique={"period": 60},
            )
        )
    assert not first.conflict
    assert again.conflict
    assert again.id == first.id
    assert again.args == {"id": 123456789012345678901234567890}
    assert len(jobs(project, "Py.Ext.Django.Unique")) == 1


def test_the_async_enqueue_called_from_a_sync_view_fails_loudly(project: str) -> None:
    from oban_py import Worker

    class ProcessOrder(Worker):
        name = "Py.Ext.Django.ProcessOrder"

        def process(self, job: Job) -> None:
            pass

    # A sync view calling the async API would otherwise answer 200 having enqueued nothing;
    # the error names Django's own sync enqueue, not the Client's.
    with pytest.raises(
        RuntimeError, match=r"in Django, call oban_py_ext\.django\.enqueue\(Worker\.new"
    ):
        ProcessOrder.enqueue({"order": 1})
    assert jobs(project, ProcessOrder.name) == []


def test_admin_lists_jobs_and_retries_and_cancels_them(project: str) -> None:
    from django.contrib.auth.models import User
    from django.test import Client as HttpClient
    from oban_py_ext.django import enqueue
    from oban_py_ext.django.models import Job as JobRow

    discarded = enqueue(Job(worker="Py.Ext.Django.Admin", args={"k": "retry-me"}))
    with psycopg.connect(project) as conn:
        conn.execute(
            b"UPDATE oban_jobs SET state = 'discarded', discarded_at = now() WHERE id = %s",
            [discarded.id],
        )
    waiting = enqueue(Job(worker="Py.Ext.Django.Admin", args={"k": "cancel-me"}))

    admin_user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    http = HttpClient()
    http.force_login(admin_user)
    page = http.get("/admin/oban_py/job/", {"q": "Py.Ext.Django.Admin"})
    assert page.status_code == 200
    assert b"retry-me" not in page.content  # args stay on the detail page
    assert b"Py.Ext.Django.Admin" in page.content
    detail = http.get(f"/admin/oban_py/job/{waiting.id}/change/")
    assert detail.status_code == 200
    assert b"cancel-me" in detail.content
    assert http.get("/admin/oban_py/job/add/").status_code == 403

    url = "/admin/oban_py/job/"
    http.post(url, {"action": "retry", "_selected_action": [discarded.id]})
    http.post(url, {"action": "cancel", "_selected_action": [waiting.id]})
    states = {j["id"]: j["state"] for j in jobs(project, "Py.Ext.Django.Admin")}
    assert states == {discarded.id: "available", waiting.id: "cancelled"}
    with pytest.raises(TypeError):
        JobRow.objects.get(id=waiting.id).save()


def test_admin_actions_need_the_change_permission(project: str) -> None:
    from django.contrib.auth.models import Permission, User
    from django.test import Client as HttpClient
    from oban_py_ext.django import enqueue

    waiting = enqueue(Job(worker="Py.Ext.Django.Viewer"))
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    http = HttpClient()
    http.force_login(viewer)
    assert http.get("/admin/oban_py/job/").status_code == 200
    http.post("/admin/oban_py/job/", {"action": "cancel", "_selected_action": [waiting.id]})
    assert [j["state"] for j in jobs(project, "Py.Ext.Django.Viewer")] == ["available"]


def test_sqlmigrate_prints_the_install_script(project: str) -> None:
    out = io.StringIO()
    call_command("sqlmigrate", "oban_py", "0001", stdout=out)
    assert "CREATE TABLE" in out.getvalue()
    assert "CANNOT BE WRITTEN AS SQL" not in out.getvalue()


def test_admin_times_are_aware_utc_and_shown_in_the_users_time_zone(project: str) -> None:
    from django.contrib.auth.models import User
    from django.test import Client as HttpClient
    from oban_py_ext.django import enqueue
    from oban_py_ext.django.models import Job as JobRow

    job = enqueue(Job(worker="Py.Ext.Django.Times"))
    with psycopg.connect(project) as conn:
        conn.execute(
            b"UPDATE oban_jobs SET scheduled_at = '2030-01-02 03:04:05' WHERE id = %s", [job.id]
        )
    row = JobRow.objects.get(id=job.id)
    assert row.scheduled_at.tzinfo is not None
    assert row.scheduled_at.astimezone(UTC).isoformat() == "2030-01-02T03:04:05+00:00"
    # Lookups with aware values compare against the naive UTC column.
    assert JobRow.objects.filter(id=job.id, scheduled_at=row.scheduled_at).exists()
    http = HttpClient()
    http.force_login(User.objects.create_superuser("tz-admin", "tz@example.com", "pw"))
    page = http.get("/admin/oban_py/job/", {"q": "Py.Ext.Django.Times"})
    assert b"Jan. 2, 2030, 12:04 p.m." in page.content  # 03:04 UTC in Asia/Tokyo


def test_admin_says_when_nothing_could_be_cancelled_or_retried(project: str) -> None:
    from django.contrib.auth.models import User
    from django.test import Client as HttpClient
    from oban_py_ext.django import enqueue

    done = enqueue(Job(worker="Py.Ext.Django.Finished"))
    waiting = enqueue(Job(worker="Py.Ext.Django.Finished"))
    with psycopg.connect(project) as conn:
        conn.execute(
            b"UPDATE oban_jobs SET state = 'completed', completed_at = now() WHERE id = %s",
            [done.id],
        )
    http = HttpClient()
    http.force_login(User.objects.create_superuser("msg-admin", "msg@example.com", "pw"))
    url = "/admin/oban_py/job/"
    page = http.post(url, {"action": "cancel", "_selected_action": [done.id]}, follow=True)
    assert b"No job cancelled" in page.content
    assert b"0 job(s) cancelled" not in page.content
    both = {"action": "cancel", "_selected_action": [done.id, waiting.id]}
    page = http.post(url, both, follow=True)
    assert b"1 of 2 job(s) cancelled" in page.content
    page = http.post(url, {"action": "retry", "_selected_action": [done.id]}, follow=True)
    assert b"1 job(s) retried" in page.content


def test_admin_queue_filter_lists_every_queue_without_a_full_scan(project: str) -> None:
    from django.contrib.auth.models import User
    from django.test import Client as HttpClient
    from oban_py_ext.django import enqueue_many
    from oban_py_ext.django.actions import queue_names

    enqueue_many([Job(worker="Py.Ext.Django.Q", queue=q) for q in ("alpha", "beta", "beta")])
    assert {"alpha", "beta"} <= set(queue_names())
    http = HttpClient()
    http.force_login(User.objects.create_superuser("q-admin", "q@example.com", "pw"))
    page = http.get("/admin/oban_py/job/", {"queue": "alpha"})
    assert page.status_code == 200
    assert b"?queue=beta" in page.content


def test_only_the_usable_permissions_exist(project: str) -> None:
    from django.contrib.auth.models import Permission

    found = Permission.objects.filter(content_type__app_label="oban_py")
    assert sorted(p.codename for p in found) == ["change_job", "view_job"]


# -- the node's DSN ----------------------------------------------------------------------------


def _config_for(alias: str) -> Any:
    from oban_py_ext.django import conf

    with override_settings(OBAN={"database": alias, "peer": False, "queues": {}}):
        return conf.config()


async def test_the_node_connects_with_every_option_of_the_django_database(project: str) -> None:
    config = _config_for("tuned")
    async with Oban(config) as node:
        async with node.pool.connection() as conn:
            cur = await conn.execute("SHOW statement_timeout")
            assert (await cur.fetchone()) == ("5s",)
        with psycopg.connect(project) as admin:
            names = admin.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            ).fetchall()
    assert ("oban-tuned",) in names


def test_sslmode_verify_full_is_kept_so_no_plain_connection_is_made(project: str) -> None:
    from oban_py_ext.django import conf

    dsn = conf.dsn("strict")
    params = conninfo_to_dict(dsn)
    assert params["sslmode"] == "verify-full"
    if str(params.get("host", "")).startswith("/"):
        # libpq never uses SSL over a Unix socket (the embedded server's): nothing to refuse.
        pytest.skip("the test server is reached over a Unix socket, where sslmode does not apply")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=3).close()


def test_an_option_libpq_does_not_know_stops_the_node(
    project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oban_py_ext.django import conf

    options = connections["strict"].settings_dict["OPTIONS"]
    monkeypatch.setitem(options, "sslmdoe", "require")
    # The bad option is named alone, not hidden in the list of every key (dbname, host...).
    with pytest.raises(ImproperlyConfigured, match=r"libpq cannot take \(sslmdoe\)"):
        conf.dsn("strict")


@pytest.mark.parametrize("poison", ["shop\x00", "caf\udce9"])
def test_an_option_libpq_would_cut_short_stops_the_node(
    project: str, monkeypatch: pytest.MonkeyPatch, poison: str
) -> None:
    from oban_py_ext.django import conf

    # libpq stops reading at a NUL: the sslmode after it would be dropped without a word.
    options = connections["strict"].settings_dict["OPTIONS"]
    monkeypatch.setitem(options, "application_name", poison)
    with pytest.raises(ImproperlyConfigured, match="libpq cannot take"):
        conf.dsn("strict")


def test_assume_role_becomes_a_startup_role(project: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from oban_py_ext.django import conf

    options = connections["strict"].settings_dict["OPTIONS"]
    monkeypatch.setitem(options, "assume_role", "reporting")
    assert "-c role=reporting" in conninfo_to_dict(conf.dsn("strict"))["options"]


# -- settings, schema and database checks ------------------------------------------------------


def test_misspelt_oban_settings_fail_the_system_check(project: str) -> None:
    with (
        override_settings(OBAN={"queus": {"default": 10}}),
        pytest.raises(SystemCheckError, match="queus"),
    ):
        call_command("check")
    with (
        override_settings(OBAN={"queues": {"default": 0}}),
        pytest.raises(SystemCheckError, match="greater than 0"),
    ):
        call_command("check")


def test_unimportable_worker_modules_fail_the_system_check(project: str) -> None:
    with (
        override_settings(OBAN={"workers": ["django_test_workers", "shop.no_such_workers"]}),
        pytest.raises(SystemCheckError, match=r"oban\.E005.*'shop\.no_such_workers'"),
    ):
        call_command("check")


@pytest.mark.parametrize("oban", [["queues"], "queues", 3])
def test_an_oban_setting_that_is_no_dict_is_a_check_error_not_a_traceback(
    project: str, oban: Any
) -> None:
    with override_settings(OBAN=oban):
        with pytest.raises(SystemCheckError, match=r"OBAN must be a dict, not"):
            call_command("check", databases=["default"])
        with pytest.raises(CommandError, match=r"OBAN must be a dict"):
            call_command("oban", "start", stderr=io.StringIO())


def test_an_unknown_other_database_choice_fails_the_system_check(project: str) -> None:
    with (
        override_settings(OBAN={"other_database": "wait"}),
        pytest.raises(SystemCheckError, match="other_database"),
    ):
        call_command("check")


def test_oban_version_names_the_manage_py_fix(project: str) -> None:
    with psycopg.connect(project, autocommit=True) as conn:
        conn.execute("COMMENT ON TABLE oban_jobs IS '12'")
    out = io.StringIO()
    try:
        with pytest.raises(CommandError, match=r"version 12.*manage\.py oban migrate") as raised:
            call_command("oban", "version", stdout=out)
        assert "oban-py" not in str(raised.value)
        assert out.getvalue().strip() == "12"
    finally:
        call_command("oban", "migrate", stdout=io.StringIO())


def test_sqlite_is_refused_with_a_clear_message(project: str) -> None:
    from oban_py_ext.django import enqueue

    with override_settings(OBAN={"database": "lite"}):
        with pytest.raises(SystemCheckError, match="needs PostgreSQL"):
            call_command("check")
        with pytest.raises(ImproperlyConfigured, match="needs PostgreSQL"):
            enqueue(Job(worker="Py.Ext.Django.Lite"))
        with pytest.raises((SystemCheckError, ImproperlyConfigured), match="needs PostgreSQL"):
            call_command("migrate", database="lite", verbosity=0)


def test_an_incomplete_schema_is_reported_and_start_refuses_with_the_django_fix(
    project: str,
) -> None:
    from django.core.checks import run_checks

    def warnings() -> list[str]:
        return [m.msg for m in run_checks(databases=["default"]) if m.id == "oban.W001"]

    with psycopg.connect(project, autocommit=True) as conn:
        conn.execute("DROP TABLE oban_py_heartbeats")
    assert any("oban_py_heartbeats" in w for w in warnings())
    with pytest.raises(CommandError, match=r"manage\.py oban migrate"):
        call_command("oban", "start", stderr=io.StringIO())
    call_command("oban", "migrate", stdout=io.StringIO())
    assert warnings() == []

    with psycopg.connect(project, autocommit=True) as conn:
        conn.execute("COMMENT ON TABLE oban_jobs IS '12'")
    assert any("version 12" in w for w in warnings())
    with pytest.raises(CommandError, match=r"version 12.*manage\.py oban migrate"):
        call_command("oban", "start", stderr=io.StringIO())
    call_command("oban", "migrate", stdout=io.StringIO())
    assert warnings() == []


def test_bad_start_options_are_command_errors(project: str) -> None:
    for args in (
        ["--queue", "default:0"],
        ["--queue", "default:x"],
        ["--queue", "default:" + "9" * 40],
        ["--queue", ":5"],
        # One syntax everywhere, the CLI's: NAME=LIMIT is refused with a hint.
        ["--queue", "mail=2"],
        ["--queues", "a:b"],
    ):
        with pytest.raises(CommandError):
            call_command("oban", "start", *args, stderr=io.StringIO())


def test_every_oban_py_command_runs_on_the_django_database(project: str) -> None:
    out = io.StringIO()
    call_command("oban", "enqueue", "Py.Ext.Django.Cli", "--queue", "cli", stdout=out)
    call_command("oban", "jobs", "--queue", "cli", "--json", stdout=out)
    assert '"worker":"Py.Ext.Django.Cli"' in out.getvalue()
    assert [j["queue"] for j in jobs(project, "Py.Ext.Django.Cli")] == ["cli"]


def test_flush_empties_oban_jobs_like_any_apps_table(project: str) -> None:
    from oban_py_ext.django import enqueue

    enqueue(Job(worker="Py.Ext.Django.Flushed"))
    call_command("flush", interactive=False, verbosity=0)
    assert jobs(project, "Py.Ext.Django.Flushed") == []


# -- connections around jobs -------------------------------------------------------------------


@pytest.fixture
def orm_node_config(project: str) -> Any:
    """A node on the project database whose own connections are named apart from Django's."""
    from oban_py_ext.django import conf

    connections.close_all()  # this thread's connection is not a job's
    node_dsn = make_conninfo(project, application_name="oban-node")
    with override_settings(OBAN={"peer": False, "queues": {"orm": 8}}):
        return conf.config(dsn=node_dsn, stage_interval=0.1, poll_interval=0.1)


def _django_backends(project: str) -> int:
    with psycopg.connect(project) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [DJANGO_APP]
        ).fetchone()
    assert row is not None
    return int(row[0])


def _kill_django_backends(project: str) -> int:
    with psycopg.connect(project) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [DJANGO_APP],
        ).fetchall()
    return len(killed)


async def _settled(node: Oban, ids: list[int]) -> dict[int, tuple[str, int]]:
    deadline = time.monotonic() + 30.0
    while True:
        async with node.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, state::text, attempt FROM oban_jobs WHERE id = ANY(%s)", [ids]
            )
            rows = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
        if all(s not in ("available", "executing") for s, _ in rows.values()):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs still running: {rows}")
        await asyncio.sleep(0.1)


async def test_complete_in_commits_with_the_atomic_block_or_not_at_all(
    project: str, orm_node_config: Any
) -> None:
    from django_test_workers import CompletesInAtomic

    with psycopg.connect(project, autocommit=True) as conn:
        conn.execute("CREATE TABLE django_effects (job_id bigint NOT NULL)")
    async with Oban(orm_node_config) as node:
        ok, failed = await node.enqueue_many(
            [CompletesInAtomic.new({}), CompletesInAtomic.new({"fail": True})]
        )
        settled = await _settled(node, [ok.id or 0, failed.id or 0])
    assert settled == {ok.id: ("completed", 1), failed.id: ("discarded", 1)}
    with psycopg.connect(project) as conn:
        done = conn.execute("SELECT array_agg(job_id) FROM django_effects").fetchone()
    assert done == ([ok.id],)


async def test_a_connection_kill_mid_run_fails_no_later_job(
    project: str, orm_node_config: Any
) -> None:
    from django_test_workers import AsyncOrm, SyncOrm

    async with Oban(orm_node_config) as node:
        first = await node.enqueue_many(
            [SyncOrm.new({"n": i}) for i in range(60)] + [AsyncOrm.new({"n": i}) for i in range(20)]
        )
        # Mid-run: as soon as jobs hold Django connections (a fixed wait outlived every job
        # on a fast machine, leaving nothing to kill).
        killed, deadline = 0, time.monotonic() + 10.0
        while not killed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            killed = _kill_django_backends(project)
        assert killed > 0
        settled = await _settled(node, [j.id for j in first if j.id])
        assert {s for s, _ in settled.values()} <= {"completed", "retryable"}

        later = await node.enqueue_many(
            [SyncOrm.new({"n": i}) for i in range(40)] + [AsyncOrm.new({"n": i}) for i in range(20)]
        )
        settled = await _settled(node, [j.id for j in later if j.id])
        assert set(settled.values()) == {("completed", 1)}
        # CONN_MAX_AGE = 0: every job's connection was closed when the job ended.
        assert _django_backends(project) == 0


async def test_async_orm_jobs_run_concurrently_each_in_its_own_orm_thread(
    project: str, orm_node_config: Any
) -> None:
    from django_test_workers import ORM_SPANS, OrmBound

    ORM_SPANS.clear()
    async with Oban(orm_node_config) as node:
        batch = await node.enqueue_many([OrmBound.new({"n": i}) for i in range(8)])
        settled = await _settled(node, [j.id for j in batch if j.id])
    assert set(settled.values()) == {("completed", 1)}
    spans = sorted(ORM_SPANS)
    # Through asgiref's one shared thread they would run one after the other.
    assert any(later[0] < earlier[1] for earlier, later in pairwise(spans))


async def test_jobs_give_connections_back_to_djangos_pool(
    project: str, orm_node_config: Any
) -> None:
    from django_test_workers import PooledOrm

    async with Oban(orm_node_config) as node:
        batch = await node.enqueue_many([PooledOrm.new({"n": i}) for i in range(24)])
        settled = await _settled(node, [j.id for j in batch if j.id])
    # 8 pool threads share a pool of 2: each job holds a connection only while it runs.
    assert set(settled.values()) == {("completed", 1)}


def test_the_testing_extra_brings_pytest_asyncio_for_the_oban_testing_fixture() -> None:
    import tomllib
    from pathlib import Path

    from conftest import ROOT

    # The fixture is async; no Django (or other) extra installed what runs it.
    extras = tomllib.loads(Path(ROOT, "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(d.startswith("pytest-asyncio") for d in extras["testing"])
