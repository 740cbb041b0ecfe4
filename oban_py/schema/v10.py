"""V10: defaults and checks that guard ``insert_all`` with bad data; GIN indexes on args/meta."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, ddl

VERSION = 10


def up(prefix: str) -> list[Statement]:
    """Set the args default, make priority required, add range checks, swap indexes."""
    return [
        ddl(
            "ALTER TABLE {prefix}.oban_jobs"
            " ALTER COLUMN args SET DEFAULT '{{}}'::jsonb,"
            " ALTER COLUMN priority SET NOT NULL",
            prefix,
        ),
        ddl(
            "ALTER TABLE {prefix}.oban_jobs ADD CONSTRAINT priority_range"
            " CHECK (priority BETWEEN 0 AND 3)",
            prefix,
        ),
        ddl(
            "ALTER TABLE {prefix}.oban_jobs ADD CONSTRAINT positive_max_attempts"
            " CHECK (max_attempts > 0)",
            prefix,
        ),
        ddl(
            "ALTER TABLE {prefix}.oban_jobs ADD CONSTRAINT attempt_range"
            " CHECK (attempt BETWEEN 0 AND max_attempts)",
            prefix,
        ),
        # Indexes some older installs carry and nothing uses.
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_args_vector", prefix),
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_worker_gist", prefix),
        ddl("DROP INDEX IF EXISTS {prefix}.oban_jobs_attempted_at_id_index", prefix),
        # Unique-job lookups filter on args and meta.
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_args_index"
            " ON {prefix}.oban_jobs USING gin (args)",
            prefix,
        ),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_meta_index"
            " ON {prefix}.oban_jobs USING gin (meta)",
            prefix,
        ),
    ]


def down(prefix: str) -> list[Statement]:
    """Undo the defaults and checks (like Elixir, the indexes stay)."""
    return [
        ddl(
            "ALTER TABLE {prefix}.oban_jobs"
            " ALTER COLUMN args DROP DEFAULT,"
            " ALTER COLUMN priority DROP NOT NULL",
            prefix,
        ),
        ddl("ALTER TABLE {prefix}.oban_jobs DROP CONSTRAINT IF EXISTS attempt_range", prefix),
        ddl(
            "ALTER TABLE {prefix}.oban_jobs DROP CONSTRAINT IF EXISTS positive_max_attempts",
            prefix,
        ),
        ddl("ALTER TABLE {prefix}.oban_jobs DROP CONSTRAINT IF EXISTS priority_range", prefix),
    ]
