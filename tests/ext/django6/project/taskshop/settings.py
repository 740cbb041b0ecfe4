"""A Django 6 project whose ``@task`` functions run on Oban: ``TASKS`` names the backend.

The database comes from ``TASKSHOP_DSN`` (the tests create one per run); ``other`` is a second
connection to it, for a caller inside another database's ``atomic()`` block.
"""

import os

from psycopg.conninfo import conninfo_to_dict


def _database(dsn: str) -> dict[str, object]:
    params = conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname"),
        "USER": params.get("user", "postgres"),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", "127.0.0.1"),
        "PORT": params.get("port", "5432"),
    }


SECRET_KEY = "oban-py-taskshop"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
TIME_ZONE = "Europe/Paris"
ROOT_URLCONF = "taskshop.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Django 6 refuses ArrayField (Job.errors, tags, attempted_by) without django.contrib.postgres.
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.postgres",
    "oban_py_ext.django",
    "shop",
]

DATABASES = {
    "default": _database(os.environ["TASKSHOP_DSN"]),
    "other": _database(os.environ["TASKSHOP_DSN"]),
}

TASKS = {
    "default": {"BACKEND": "oban_py_ext.django.tasks.ObanTaskBackend", "QUEUES": []},
    # Django's reference backends run a task once: so does this one.
    "once": {
        "BACKEND": "oban_py_ext.django.tasks.ObanTaskBackend",
        "QUEUES": [],
        "OPTIONS": {"max_attempts": 1},
    },
}

OBAN = {
    "queues": {"default": 5, "mail": 2},
    "stage_interval": 0.2,
    "poll_interval": 0.2,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"oban": {"handlers": ["console"], "level": "INFO"}},
}
