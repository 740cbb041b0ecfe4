"""V01: the state enum, ``oban_jobs``, its first indexes and the notify trigger.

Oban 2.23.1 creates the enum with every label current releases know (``suspended`` and
``cancelled`` included, in their final order); V09 and V14 only add them to older installs.
"""

from __future__ import annotations

from oban_py.schema._ddl import (
    DEFAULT_PREFIX,
    Statement,
    ddl,
    notify_function_v01,
    notify_trigger_v01,
)

VERSION = 1


def up(prefix: str) -> list[Statement]:
    """Create the V01 objects, skipping any that already exist."""
    statements: list[Statement] = []
    if prefix != DEFAULT_PREFIX:
        statements.append(ddl("CREATE SCHEMA IF NOT EXISTS {prefix}", prefix))
    statements += [
        ddl(
            """
            DO $$
            BEGIN
              IF NOT EXISTS (
                SELECT 1
                FROM pg_catalog.pg_type t
                JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                WHERE t.typname = 'oban_job_state' AND n.nspname = {prefix_name}
              ) THEN
                CREATE TYPE {prefix}.oban_job_state AS ENUM (
                  'available', 'suspended', 'scheduled', 'executing',
                  'retryable', 'completed', 'discarded', 'cancelled'
                );
              END IF;
            END $$
            """,
            prefix,
        ),
        ddl(
            """
            CREATE TABLE IF NOT EXISTS {prefix}.oban_jobs (
              id bigserial,
              state {prefix}.oban_job_state NOT NULL DEFAULT 'available',
              queue text NOT NULL DEFAULT 'default',
              worker text NOT NULL,
              args jsonb NOT NULL,
              errors jsonb[] NOT NULL DEFAULT ARRAY[]::jsonb[],
              attempt integer NOT NULL DEFAULT 0,
              max_attempts integer NOT NULL DEFAULT 20,
              inserted_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now()),
              scheduled_at timestamp without time zone NOT NULL DEFAULT timezone('UTC', now()),
              attempted_at timestamp without time zone,
              completed_at timestamp without time zone,
              PRIMARY KEY (id)
            )
            """,
            prefix,
        ),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_queue_index ON {prefix}.oban_jobs (queue)", prefix
        ),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_state_index ON {prefix}.oban_jobs (state)", prefix
        ),
        ddl(
            "CREATE INDEX IF NOT EXISTS oban_jobs_scheduled_at_index"
            " ON {prefix}.oban_jobs (scheduled_at)",
            prefix,
        ),
        notify_function_v01(prefix),
        *notify_trigger_v01(prefix),
    ]
    return statements


def down(prefix: str) -> list[Statement]:
    """Drop everything V01 created except the schema itself."""
    return [
        ddl("DROP TRIGGER IF EXISTS oban_notify ON {prefix}.oban_jobs", prefix),
        ddl("DROP FUNCTION IF EXISTS {prefix}.oban_jobs_notify()", prefix),
        ddl("DROP TABLE IF EXISTS {prefix}.oban_jobs", prefix),
        ddl("DROP TYPE IF EXISTS {prefix}.oban_job_state", prefix),
    ]
