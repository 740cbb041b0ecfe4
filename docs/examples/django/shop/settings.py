"""Settings of the example shop: a PostgreSQL database from DATABASE_URL (its NAME from
SHOP_DB_NAME), the oban_py app, and an ``orders`` app with sync and async ORM workers."""

import os

from psycopg.conninfo import conninfo_to_dict

server = conninfo_to_dict(
    os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)

SECRET_KEY = "example-shop-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
USE_TZ = True
TIME_ZONE = "Europe/Paris"
ROOT_URLCONF = "shop.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("SHOP_DB_NAME", "shop"),
        "USER": server.get("user", "postgres"),
        "PASSWORD": server.get("password", ""),
        "HOST": server.get("host", "127.0.0.1"),
        "PORT": server.get("port", "5432"),
        # Every libpq option here reaches the Oban node's connections too.
        "OPTIONS": {"application_name": "shop", "options": "-c statement_timeout=30000"},
        # Django's default: a job's connection is closed when the job ends.
        "CONN_MAX_AGE": 0,
    }
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Django 6 needs it for the ArrayField columns of oban_py's Job model (postgres.E005).
    "django.contrib.postgres",
    "oban_py_ext.django",
    "orders",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
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
]

OBAN = {
    "queues": {"orders": 10, "mail": 5},
    # Optional: the node's own DSN (else Django's database, OPTIONS included).
    "dsn": os.environ.get("SHOP_OBAN_DSN") or None,
    "shutdown_grace": float(os.environ.get("SHOP_SHUTDOWN_GRACE", "15")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # Job events (started, stopped, failed) and the node's news, through Django's logging.
    "loggers": {"oban": {"handlers": ["console"], "level": "INFO"}},
}
