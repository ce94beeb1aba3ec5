"""Turn a scorecard document into what the HTML templates show. Jinja2 autoescapes every
string; the SVG charts escape their own text."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.scorecard.pages.charts import axis_bounds, effect_over_time, forest_bar
from services.scorecard.readout import format_change, format_value

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")
GROUP_TITLES = {"primary": "Primary metrics", "secondary": "Secondary metrics", "guardrail": "Guardrails"}
QUALITY_LABELS = [
    ("exposures", "Exposures"), ("units", "Units analysed"), ("duplicate_events", "Duplicate events removed"),
    ("multiple_variant_units", "Units exposed to several variants (excluded)"),
    ("events_without_exposure", "Events without an exposure"), ("late_events_included", "Late events included"),
    ("late_after_freeze", "Late events after a day was frozen"), ("watermark", "Watermark (latest received)"),
]  # fmt: skip


def environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))


def _number(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def _interval(interval: list[Any] | None, percent: bool) -> str:
    if not interval or None in interval:
        return ""
    return f"[{interval[0]:+.2%}, {interval[1]:+.2%}]" if percent else f"[{interval[0]:+.4g}, {interval[1]:+.4g}]"


def _tone(comparison: dict[str, Any], higher_is_better: bool) -> str:
    effect = comparison.get("relative_effect") or comparison.get("absolute_effect")
    if not comparison.get("significant") or effect is None:
        return "neutral"
    return "good" if (effect > 0) == higher_is_better else "bad"


CELLS = ("absolute", "absolute_ci", "relative", "relative_ci", "bar", "p_value", "cuped", "tone", "error")
EMPTY_ROW = dict.fromkeys(CELLS, "")


def _comparison_cells(
    comparison: dict[str, Any], higher_is_better: bool, bounds: tuple[float, float]
) -> dict[str, Any]:
    tone = _tone(comparison, higher_is_better)
    reduction = comparison["cuped"].get("variance_reduction") or 0.0
    relative = comparison.get("relative_effect")
    return {
        "absolute": _number(comparison["absolute_effect"]),
        "absolute_ci": _interval(comparison["absolute_ci"], False),
        "relative": "–" if relative is None else f"{relative:+.2%}",
        "relative_ci": _interval(comparison["relative_ci"], True),
        "bar": forest_bar(comparison["relative_ci"], relative, bounds, tone),
        "tone": tone,
        "p_value": _number(comparison["p_value"], 3),
        # Only worth showing when CUPED removed a visible share of the variance.
        "cuped": f"−{reduction:.0%} var" if comparison["cuped"].get("applied") and reduction >= 0.005 else "",
        "error": (comparison.get("error") or {}).get("message", ""),
    }


def _in_format(row: dict[str, Any], variant: dict[str, Any], comparison: dict[str, Any] | None, fmt: str) -> None:
    """A quantile metric's value and difference in the metric's own format (320 ms, +12 ms): its
    numbers are event values, such as page-load times, not shares."""
    row["mean"] = format_value(variant["mean"], fmt) if variant["mean"] is not None else "–"
    if comparison is None or comparison["absolute_effect"] is None:
        return
    row["absolute"] = format_change(comparison["absolute_effect"], fmt)
    interval = comparison["absolute_ci"]
    if interval and None not in interval:
        row["absolute_ci"] = f"[{format_change(interval[0], fmt)}, {format_change(interval[1], fmt)}]"


def _rows(metric: dict[str, Any], bounds: tuple[float, float], fmt: str) -> list[dict[str, Any]]:
    by_variant = {c["variant"]: c for c in metric["comparisons"]}
    rows = []
    for index, variant in enumerate(metric["variants"]):
        row = {"key": variant["key"], "n": variant["n"], "mean": _number(variant["mean"]), "baseline": index == 0,
               **EMPTY_ROW}  # fmt: skip
        comparison = by_variant.get(variant["key"])
        if comparison is not None:
            row.update(_comparison_cells(comparison, metric["higher_is_better"], bounds))
        if metric["type"] == "quantile":
            _in_format(row, variant, comparison, fmt)
        rows.append(row)
    return rows


def metric_kind(metric: dict[str, Any]) -> str:
    """'proportion', or for a quantile metric 'p90 (quantile)'."""
    if metric["type"] == "quantile" and metric.get("quantile") is not None:
        return f"p{metric['quantile'] * 100:g} (quantile)"
    return str(metric["type"])


def _chart(metric: dict[str, Any]) -> tuple[Any, str]:
    timeline = metric.get("timeline") or []
    variant = metric["comparisons"][0]["variant"] if metric["comparisons"] else None
    series = []
    for point in timeline:
        match = next((c for c in point["comparisons"] if c["variant"] == variant), None)
        if match:
            series.append({"date": point["date"], "final": point["final"],
                           "effect": match["relative_effect"], "ci": match["relative_ci"]})  # fmt: skip
    return (effect_over_time(series) if series else None), variant or ""


def metric_groups(card: dict[str, Any], formats: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The metric tables by role; `formats` maps a metric to its catalog format (number by default)."""
    formats = formats or {}
    groups = []
    for role, title in GROUP_TITLES.items():
        metrics = [m for m in card["metrics"] if m["role"] == role]
        if not metrics:
            continue
        bounds = axis_bounds([c["relative_ci"] for m in metrics for c in m["comparisons"]])
        shown = []
        for metric in metrics:
            chart, chart_variant = _chart(metric) if role != "guardrail" else (None, "")
            fmt = formats.get(metric["name"], "number")
            shown.append({"name": metric["name"], "type": metric_kind(metric),
                          "higher_is_better": metric["higher_is_better"],
                          "rows": _rows(metric, bounds, fmt), "chart": chart, "chart_variant": chart_variant,
                          "baseline": metric["variants"][0]["key"] if metric["variants"] else ""})  # fmt: skip
        groups.append({"role": role, "title": title, "metrics": shown})
    return groups


def quality_rows(quality: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(label, quality[key]) for key, label in QUALITY_LABELS if key in quality]
