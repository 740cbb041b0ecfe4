"""V12: priorities above 3 allowed; the insert trigger goes (applications notify themselves)."""

from __future__ import annotations

from oban_py.schema._ddl import Statement, ddl, notify_function_v08, notify_trigger_v08

VERSION = 12


def up(prefix: str) -> list[Statement]:
    """Replace ``priority_range`` with an unvalidated ``priority >= 0``, drop the trigger."""
    return [
        ddl("ALTER TABLE {prefix}.oban_jobs DROP CONSTRAINT priority_range", prefix),
        # NOT VALID: skips scanning a possibly huge table; new rows are still checked.
        ddl(
            "ALTER TABLE {prefix}.oban_jobs ADD CONSTRAINT non_negative_priority"
            " CHECK (priority >= 0) NOT VALID",
            prefix,
        ),
        ddl("DROP TRIGGER IF EXISTS oban_notify ON {prefix}.oban_jobs", prefix),
        ddl("DROP FUNCTION IF EXISTS {prefix}.oban_jobs_notify()", prefix),
    ]


def down(prefix: str) -> list[Statement]:
    """Restore ``priority_range`` (unvalidated) and the V08 trigger."""
    return [
        ddl("ALTER TABLE {prefix}.oban_jobs DROP CONSTRAINT non_negative_priority", prefix),
        ddl(
            "ALTER TABLE {prefix}.oban_jobs ADD CONSTRAINT priority_range"
            " CHECK (priority BETWEEN 0 AND 3) NOT VALID",
            prefix,
        ),
        notify_function_v08(prefix),
        *notify_trigger_v08(prefix),
    ]
