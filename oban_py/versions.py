"""The Oban schema versions this package knows (Elixir Oban's migration numbers).

A module of its own, importing nothing, so ``oban-py --version`` and the CLI's option defaults
read them without loading ``oban_py.schema`` (psycopg and every migration).
"""

from __future__ import annotations

#: Elixir Oban's first migration version.
INITIAL_VERSION = 1
#: The version Elixir Oban 2.23.1 installs, and the one this package needs.
CURRENT_VERSION = 14
