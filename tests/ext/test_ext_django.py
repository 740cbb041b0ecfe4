"""Django: a real project (settings configured here) on a database of its own, migrated by
Django, so the app's migration is what installs the schema."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import django
import psycopg
import pytest
from conftest import create_database, drop_database, dsn_for
from django.conf import settings
from django.core.management import call_command
from django.db import connections, transaction
from psycopg.conninfo import conninfo_to_dict

from oban_py import Job
from oban_py.schema import CURRENT_VERSION


@pytest.fixture(scope="module")
def project(server_dsn: str) -> Iterator[str]:
    """The project's database DSN, after ``manage.py migrate``."""
    name = create_database(server_dsn)
    params = conninfo_to_dict(server_dsn)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": params.get("user", "postgres"),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", "127.0.0.1"),
        "PORT": params.get("port", "5432"),
    }
    if settings.configured:
        settings.DATABASES["default"].update(database)
    else:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="oban-py-ext-tests",
            ALLOWED_HOSTS=["testserver"],
            USE_TZ=True,
            DATABASES={"default": database},
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
    yield dsn_for(server_dsn, name)
    connections.close_all()
    drop_database(server_dsn, name)


def jobs(dsn: str, worker: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(b"SELECT row_to_json(j) FROM oban_jobs j WHERE worker = %s", [worker])
        return [row[0] for row in cur.fetchall()]


def test_migrate_installs_the_current_schema(project: str) -> None:
    out = io.StringIO()
    call_command("oban", "version", stdout=out)
    assert out.getvalue().strip() == str(CURRENT_VERSION)
    call_command("oban", "install", stdout=out)
    assert f"version {CURRENT_VERSION} -> {CURRENT_VERSION}" in out.getvalue()


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


def test_enqueue_outside_atomic_commits_at_once(project: str) -> None:
    from oban_py_ext.django import enqueue

    enqueue(Job(worker="Py.Ext.Django.Autocommit"))
    assert len(jobs(project, "Py.Ext.Django.Autocommit")) == 1


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


def test_start_runs_a_node_that_works_the_configured_queues(project: str) -> None:
    from oban_py_ext.django import enqueue

    job = enqueue(Job(worker="Py.Ext.Django.Mailer", queue="mail"))
    out = io.StringIO()
    call_command("oban", "start", "--run-for", "1.5", stdout=out)
    assert "running mail" in out.getvalue()
    assert [j["state"] for j in jobs(project, "Py.Ext.Django.Mailer")] == ["completed"]
    assert job.id is not None


def test_start_takes_the_cli_queue_syntax_and_refuses_name_equals_limit(project: str) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"--queue takes NAME:LIMIT.*did you mean 'mail:2'"):
        call_command("oban", "start", "--queue", "mail=2", "--run-for", "0.1")
    out = io.StringIO()
    call_command("oban", "start", "--queue", "mail:1,other:2", "--run-for", "0.5", stdout=out)
    assert "running mail, other" in out.getvalue()
