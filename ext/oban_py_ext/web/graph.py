"""The layout of a workflow's graph for its page: steps in columns by depth, edges as lines.

A step's column is the length of the longest chain of dependencies before it (so every edge
points right); inside a column, steps keep their insertion order. Positions are computed here
and drawn as plain SVG by the template: no script, no layout library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COLUMN = 190
ROW = 46
BOX_W = 160
BOX_H = 30
PAD = 10
#: steps drawn per column at most; a wider fan-out shows the first ones and a count of the rest
MAX_ROWS = 40


@dataclass
class Box:
    name: str
    id: int
    state: str
    x: int
    y: int


@dataclass
class Layout:
    boxes: list[Box] = field(default_factory=list)
    edges: list[tuple[int, int, int, int]] = field(default_factory=list)
    hidden: dict[int, int] = field(default_factory=dict)
    width: int = 0
    height: int = 0


def layout(jobs: list[dict[str, Any]]) -> Layout:
    """Boxes and edges of ``jobs`` (``workflows.Status.jobs``)."""
    by_name = {str(job["name"]): job for job in jobs if job.get("name") is not None}
    depth: dict[str, int] = {}

    def depth_of(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in depth:
            return depth[name]
        deps = [d for d in by_name[name]["deps"] if d in by_name and d not in seen]
        value = 1 + max((depth_of(d, seen | {name}) for d in deps), default=-1)
        depth[name] = value
        return value

    columns: dict[int, list[str]] = {}
    for name in by_name:
        columns.setdefault(depth_of(name), []).append(name)
    result = Layout()
    where: dict[str, tuple[int, int]] = {}
    for col, names in sorted(columns.items()):
        for row, name in enumerate(names[:MAX_ROWS]):
            x, y = PAD + col * COLUMN, PAD + row * ROW
            job = by_name[name]
            result.boxes.append(Box(name, int(job["id"]), str(job["state"]), x, y))
            where[name] = (x, y)
        if len(names) > MAX_ROWS:
            result.hidden[col] = len(names) - MAX_ROWS
    for name, (x, y) in where.items():
        for dep in by_name[name]["deps"]:
            if dep in where:
                dx, dy = where[dep]
                result.edges.append((dx + BOX_W, dy + BOX_H // 2, x, y + BOX_H // 2))
    rows = max((min(len(n), MAX_ROWS) for n in columns.values()), default=0)
    result.width = PAD * 2 + max(len(columns), 1) * COLUMN
    result.height = PAD * 2 + max(rows, 1) * ROW + (ROW if result.hidden else 0)
    return result
