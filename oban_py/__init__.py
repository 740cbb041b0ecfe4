"""oban_py: PostgreSQL job processing for Python, sharing ``oban_jobs`` with Elixir Oban."""

from __future__ import annotations

from oban_py.config import Config

__version__ = "0.1.0"

__all__ = ["Config", "__version__"]
