"""Driver side: cumulative snapshot statistics from the job's deltas, and the results document
(DESIGN.md "Results document"). Plain Python over a few hundred collected rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.metrics.catalog import MetricDefinition
from services.metrics.job.timeline import Timeline
from services.metrics.job.transforms import VECTOR

Vector = tuple[Decimal, ...]
ZERO: Vector = tuple(Decimal(0) for _ in VECTOR)
QUALITY_FIELDS = (
    "exposures", "units", "duplicate_events", "multiple_variant_units", "events_without_exposure",
    "late_events_included", "late_after_freeze", "events_before_exposure",
)  # fmt: skip


@dataclass(frozen=True)
class Snapshot:
    """Cumulative statistics at one snapshot: units per variant and VECTOR per (metric, variant)."""

    units: dict[str, int]
    stats: dict[tuple[str, str], Vector]


def _add(left: Vector, right: Vector) -> Vector:
    return tuple(a + b for a, b in zip(left, right, strict=True))


def accumulate(metric_deltas: Iterable[Mapping[str, Any]], unit_deltas: Iterable[Mapping[str, Any]],
               days: int) -> list[Snapshot]:  # fmt: skip
    """Prefix sums over snapshot indices 0..days-1 of the deltas collected from Spark."""
    stat_steps: dict[tuple[str, str], dict[int, Vector]] = defaultdict(dict)
    for row in metric_deltas:
        stat_steps[(row["metric"], row["variant"])][row["c"]] = tuple(Decimal(row[n]) for n in VECTOR)
    unit_steps: dict[str, dict[int, int]] = defaultdict(dict)
    for row in unit_deltas:
        unit_steps[row["variant"]][row["c"]] = int(row["units"])
    snapshots: list[Snapshot] = []
    stats: dict[tuple[str, str], Vector] = {}
    units: dict[str, int] = {}
    for index in range(days):
        stats = {key: _add(stats.get(key, ZERO), steps.get(index, ZERO)) for key, steps in stat_steps.items()}
        units = {key: units.get(key, 0) + steps.get(index, 0) for key, steps in unit_steps.items()}
        snapshots.append(Snapshot(units, stats))
    return snapshots


def variant_order(configured: Sequence[str], seen: Iterable[str]) -> list[str]:
    """Configured variants first (the first is the control), then any others seen, sorted."""
    return [*configured, *sorted(set(seen) - set(configured))]


def variant_block(metric: MetricDefinition, key: str, vector: Vector) -> dict[str, Any]:
    values = dict(zip(VECTOR, vector, strict=True))
    block: dict[str, Any] = {
        "key": key, "n": int(values["n"]),
        "sum": float(values["sum"]), "sum_squares": float(values["sum_squares"]),
    }  # fmt: skip
    if metric.cuped_lookback_days > 0:
        block["covariate"] = {
            "sum": float(values["cov_sum"]), "sum_squares": float(values["cov_sum_squares"]),
            "sum_products": float(values["cov_sum_products"]),
        }  # fmt: skip
        if metric.type == "ratio":
            block["covariate"]["denominator_products"] = float(values["cov_den_products"])
    if metric.type == "ratio":
        block["denominator"] = {
            "sum": float(values["den_sum"]), "sum_squares": float(values["den_sum_squares"]),
            "sum_products": float(values["den_sum_products"]),
        }  # fmt: skip
    return block


def metric_entries(
    metrics: Sequence[MetricDefinition], snapshot: Snapshot, variants: Sequence[str]
) -> list[Any]:
    entries = []
    for metric in metrics:
        blocks = [
            variant_block(metric, key, snapshot.stats.get((metric.name, key), ZERO)) for key in variants
        ]
        entries.append({
            "name": metric.name, "type": metric.type, "definition_hash": metric.definition_hash,
            "higher_is_better": metric.higher_is_better, "variants": blocks,
        })  # fmt: skip
    return entries


def daily_entries(timeline: Timeline, snapshots: Sequence[Snapshot], metrics: Sequence[MetricDefinition],
                  variants: Sequence[str]) -> list[dict[str, Any]]:  # fmt: skip
    entries = []
    for index, snapshot in enumerate(snapshots):
        entries.append({
            "date": timeline.day(index).isoformat(), "final": timeline.is_final(index),
            "variants": {key: {"units": snapshot.units.get(key, 0)} for key in variants},
            "metrics": metric_entries(metrics, snapshot, variants),
        })  # fmt: skip
    return entries


def empty_snapshot() -> Snapshot:
    return Snapshot({}, {})
