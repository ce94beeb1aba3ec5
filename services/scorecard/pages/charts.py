"""Server-rendered SVG charts: no script, no request to any other host, CSP-friendly
(colours come from classes in the page's own stylesheet, never inline styles)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape


def _x(value: float, low: float, high: float, width: float, pad: float) -> float:
    if high <= low:
        return pad + (width - 2 * pad) / 2
    return pad + (value - low) / (high - low) * (width - 2 * pad)


def axis_bounds(intervals: Sequence[Sequence[float | None] | None]) -> tuple[float, float]:
    """A symmetric range around zero covering every finite interval end (at least +-1%)."""
    ends = [abs(v) for iv in intervals if iv for v in iv if v is not None]
    reach = max([0.01, *ends]) * 1.1
    return -reach, reach


def data_bounds(intervals: Sequence[Sequence[float]]) -> tuple[float, float]:
    """The range the intervals span, always including zero, with a little headroom."""
    low = min([0.0, *(iv[0] for iv in intervals)])
    high = max([0.0, *(iv[1] for iv in intervals)])
    pad = max(high - low, 0.01) * 0.08
    return low - pad, high + pad


def forest_bar(
    interval: Sequence[float | None] | None, point: float | None, bounds: tuple[float, float], tone: str,
    width: int = 180, height: int = 26,
) -> Markup:  # fmt: skip
    """One comparison's interval drawn around zero (a row of a forest plot)."""
    low, high = bounds
    pad = 6.0
    zero = _x(0.0, low, high, width, pad)
    parts = [f'<svg class="forest" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
             f'<line class="zero" x1="{zero:.1f}" y1="2" x2="{zero:.1f}" y2="{height - 2}"/>']  # fmt: skip
    if interval and interval[0] is not None and interval[1] is not None and point is not None:
        x1, x2 = _x(interval[0], low, high, width, pad), _x(interval[1], low, high, width, pad)
        xp = _x(point, low, high, width, pad)
        mid = height / 2
        parts.append(f'<line class="ci {escape(tone)}" x1="{x1:.1f}" y1="{mid}" x2="{x2:.1f}" y2="{mid}"/>')
        parts.append(f'<circle class="pt {escape(tone)}" cx="{xp:.1f}" cy="{mid}" r="4"/>')
        label = f"{point:+.2%} [{interval[0]:+.2%}, {interval[1]:+.2%}]"
        parts.append(f"<title>{escape(label)}</title>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _polyline(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def effect_over_time(series: Sequence[dict[str, Any]], width: int = 640, height: int = 220) -> Markup:
    """Cumulative relative effect by day with its interval band; frozen days are marked."""
    usable = [p for p in series if p.get("effect") is not None and p.get("ci") and None not in p["ci"]]
    if len(usable) < 1:
        return Markup('<p class="muted">Not enough daily data for a chart yet.</p>')
    low, high = data_bounds([p["ci"] for p in usable])
    pad_x, pad_y = 48.0, 18.0

    def xy(i: int, value: float) -> tuple[float, float]:
        x = pad_x + (i / max(len(usable) - 1, 1)) * (width - 2 * pad_x)
        y = pad_y + (high - value) / (high - low) * (height - 2 * pad_y)
        return x, y

    upper = [xy(i, p["ci"][1]) for i, p in enumerate(usable)]
    lower = [xy(i, p["ci"][0]) for i, p in enumerate(usable)]
    line = [xy(i, p["effect"]) for i, p in enumerate(usable)]
    zero_y = xy(0, 0.0)[1]
    parts = [f'<svg class="timeline" viewBox="0 0 {width} {height}" width="100%" role="img">',
             f'<polygon class="band" points="{_polyline(upper + lower[::-1])}"/>',
             f'<line class="zero" x1="{pad_x}" y1="{zero_y:.1f}" x2="{width - pad_x}" y2="{zero_y:.1f}"/>',
             f'<polyline class="effect" points="{_polyline(line)}"/>']  # fmt: skip
    for (x, y), point in zip(line, usable, strict=True):
        tone = "final" if point.get("final") else "provisional"
        tip = f"{point['date']}: {point['effect']:+.2%} ({'frozen' if point.get('final') else 'provisional'})"
        parts.append(
            f'<circle class="day {tone}" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(tip)}</title></circle>'
        )
    drawn: list[float] = []
    for value in (0.0, high, low):  # zero first; skip labels that would overlap it
        y = xy(0, value)[1]
        if all(abs(y - other) > 14 for other in drawn):
            drawn.append(y)
            parts.append(f'<text class="tick" x="4" y="{y + 4:.1f}">{value:+.1%}</text>')
    parts.append(f'<text class="tick" x="{pad_x}" y="{height - 2}">{escape(str(usable[0]["date"]))}</text>')
    parts.append(
        f'<text class="tick end" x="{width - pad_x}" y="{height - 2}">{escape(str(usable[-1]["date"]))}</text>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))
