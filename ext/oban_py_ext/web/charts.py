"""Charts drawn on the server as SVG: no script, no library, nothing fetched by the browser.

Colours come from classes styled in ``static/dashboard.css`` (the page's Content Security
Policy allows no inline style). Every label is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 600
HEIGHT = 120
PAD = 18


def _nice_max(value: int) -> int:
    if value <= 5:
        return 5
    step: int = 10 ** (len(str(value)) - 1)
    return ((value + step - 1) // step) * step


def stacked_bars(
    title: str,
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    unit: str = "per minute",
) -> Markup:
    """One bar per point, the series stacked; ``series`` is ``(label, css class, values)``.

    The last point is the current minute, at the right edge.
    """
    points = max((len(values) for _, _, values in series), default=0)
    totals = [sum(values[i] for _, _, values in series) for i in range(points)]
    top = _nice_max(max(totals, default=0))
    inner_h = HEIGHT - 2 * PAD
    bar_w = (WIDTH - 2 * PAD) / max(points, 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" '
        f'y2="{HEIGHT - PAD}"/>',
        f'<text class="tick" x="{PAD}" y="{PAD - 6}">{top} {escape(unit)}</text>',
        f'<text class="tick" x="{PAD}" y="{HEIGHT - 4}">-{points} min</text>',
        f'<text class="tick end" x="{WIDTH - PAD}" y="{HEIGHT - 4}">now</text>',
    ]
    for i in range(points):
        base = float(HEIGHT - PAD)
        x = PAD + i * bar_w
        minutes_ago = points - 1 - i
        for label, css, values in series:
            value = values[i]
            if value <= 0:
                continue
            h = value / top * inner_h
            base -= h
            parts.append(
                f'<rect class="{escape(css)}" x="{x + 0.5:.1f}" y="{base:.1f}" '
                f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}">'
                f"<title>{escape(label)}: {value} ({minutes_ago} min ago)</title></rect>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))
