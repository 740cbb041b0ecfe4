"""Charts drawn on the server as SVG: no script, no library, nothing fetched by the browser.

Colours come from classes styled in ``static/dashboard.css`` (the page's Content Security
Policy allows no inline style). Every label is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 600
HEIGHT = 120
PAD = 18


#: Colour classes (``static/dashboard.css``) given to a chart's series in turn.
PALETTE = ("c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7")
#: A state's colour wherever a chart groups by state.
STATE_CSS = {
    "completed": "bar-ok",
    "retryable": "bar-warn",
    "discarded": "bar-fail",
    "cancelled": "bar-cancel",
    "scheduled": "bar-snooze",
}


def _nice_max(value: float) -> float:
    if value <= 5:
        return 5
    step: int = 10 ** (len(str(math.ceil(value))) - 1)
    return math.ceil(value / step) * step


def ago(seconds: int) -> str:
    """``90`` -> ``"1.5 min"``: how long ago a point was, for labels."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def nice_ms(value: float | None) -> str:
    """A duration in milliseconds for a label: 3 significant digits, or — for none."""
    if value is None or math.isnan(value):
        return "—"
    if value >= 1000:
        return f"{value / 1000:.3g} s"
    return f"{value:.3g} ms"


def css_for(label: str, index: int) -> str:
    return STATE_CSS.get(label, PALETTE[index % len(PALETTE)])


def _frame(title: str, top: str, points: int, step: int) -> list[str]:
    return [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" '
        f'y2="{HEIGHT - PAD}"/>',
        f'<text class="tick" x="{PAD}" y="{PAD - 6}">{escape(top)}</text>',
        f'<text class="tick" x="{PAD}" y="{HEIGHT - 4}">-{ago(points * step)}</text>',
        f'<text class="tick end" x="{WIDTH - PAD}" y="{HEIGHT - 4}">now</text>',
    ]


def stacked_bars(
    title: str,
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    unit: str = "per minute",
    step: int = 60,
) -> Markup:
    """One bar per point, the series stacked; ``series`` is ``(label, css class, values)``.

    Points are ``step`` seconds apart; the last one, at the right edge, is the current one.
    """
    points = max((len(values) for _, _, values in series), default=0)
    totals = [sum(values[i] for _, _, values in series) for i in range(points)]
    top = _nice_max(max(totals, default=0))
    inner_h = HEIGHT - 2 * PAD
    bar_w = (WIDTH - 2 * PAD) / max(points, 1)
    parts = _frame(title, f"{top:g} {unit}", points, step)
    for i in range(points):
        base = float(HEIGHT - PAD)
        x = PAD + i * bar_w
        when = ago((points - 1 - i) * step)
        for label, css, values in series:
            value = values[i]
            if value <= 0:
                continue
            h = value / top * inner_h
            base -= h
            parts.append(
                f'<rect class="{escape(css)}" x="{x + 0.5:.1f}" y="{base:.1f}" '
                f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}">'
                f"<title>{escape(label)}: {value} ({when} ago)</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def lines(
    title: str,
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    step: int = 60,
) -> Markup:
    """One polyline per series (``(label, css class, values)`` in milliseconds), a gap where a
    value is None."""
    points = max((len(values) for _, _, values in series), default=0)
    top = _nice_max(max((v for _, _, vs in series for v in vs if v is not None), default=0))
    inner_h = HEIGHT - 2 * PAD
    dx = (WIDTH - 2 * PAD) / max(points - 1, 1)
    parts = _frame(title, nice_ms(top), points, step)
    for label, css, values in series:
        runs: list[list[str]] = [[]]
        for i, value in enumerate(values):
            if value is None:
                runs.append([])
                continue
            y = HEIGHT - PAD - value / top * inner_h
            runs[-1].append(f"{PAD + i * dx:.1f},{y:.1f}")
        for run in runs:
            if not run:
                continue
            shape = "polyline" if len(run) > 1 else "circle"
            if shape == "circle":
                cx, cy = run[0].split(",")
                parts.append(f'<circle class="{escape(css)}" cx="{cx}" cy="{cy}" r="2">')
            else:
                parts.append(f'<polyline class="line {escape(css)}" points="{" ".join(run)}">')
            parts.append(f"<title>{escape(label)}</title></{shape}>")
    parts.append("</svg>")
    return Markup("".join(parts))
