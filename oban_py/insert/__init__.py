"""The insert engine: a pure planner (``planner``) and the drivers that run it (``drivers``)."""

from __future__ import annotations

from oban_py.insert.drivers import insert_async, insert_sync
from oban_py.insert.planner import CHUNK_SIZE, insert_plan

__all__ = ["CHUNK_SIZE", "insert_async", "insert_plan", "insert_sync"]
