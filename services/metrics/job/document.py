"""Driver side: cumulative snapshot statistics from the job's deltas, and the parts of the
results document (services/common/results.py). Plain Python over a few hundred collected rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.common.catalog import MetricDefinition
from services.common.results import (
    CovariateBlock,
    DailySnapshot,
    DataQuality,
    DenominatorBlock,
    MetricResult,
    VariantStatistics,
    VariantUnits,
)
from services.metrics.job.timeline import Timeline
from services.metrics.job.transforms import VECTOR

Vector = tuple[Decimal, ...]
ZERO: Vector = tuple(Decimal(0) for _ in VECTOR)
# The data-quality counts, in the document's order (its last field is the watermark).
QUALITY_FIELDS = tuple(name for name in DataQuality.model_fields if name != "watermark")


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


def _number(value: Decimal) -> float:
    """An exact aggregate as published: converted to float once (correctly rounded)."""
    return float(value)


def variant_block(metric: MetricDefinition, key: str, vector: Vector) -> VariantStatistics:
    values = dict(zip(VECTOR, vector, strict=True))
    covariate = denominator = None
    if metric.cuped_lookback_days > 0:
        covariate = CovariateBlock(
            sum=_number(values["cov_sum"]), sum_squares=_number(values["cov_sum_squares"]),
            sum_products=_number(values["cov_sum_products"]),
            denominator_products=_number(values["cov_den_products"]) if metric.type == "ratio" else None,
        )  # fmt: skip
    if metric.type == "ratio":
        denominator = DenominatorBlock(
            sum=_number(values["den_sum"]), sum_squares=_number(values["den_sum_squares"]),
            sum_products=_number(values["den_sum_products"]),
        )  # fmt: skip
    return VariantStatistics(
        key=key, n=int(values["n"]), sum=_number(values["sum"]), sum_squares=_number(values["sum_squares"]),
        covariate=covariate, denominator=denominator,
    )  # fmt: skip


def metric_entry(metric: MetricDefinition, snapshot: Snapshot, variants: Sequence[str]) -> MetricResult:
    blocks = tuple(variant_block(metric, key, snapshot.stats.get((metric.name, key), ZERO)) for key in variants)
    return MetricResult(
        name=metric.name, type=metric.type, definition_hash=metric.definition_hash,
        higher_is_better=metric.higher_is_better, variants=blocks,
    )  # fmt: skip


def metric_entries(
    metrics: Sequence[MetricDefinition], snapshot: Snapshot, variants: Sequence[str]
) -> tuple[MetricResult, ...]:
    return tuple(metric_entry(metric, snapshot, variants) for metric in metrics)


def variant_units(snapshot: Snapshot, variants: Sequence[str]) -> dict[str, VariantUnits]:
    return {key: VariantUnits(units=snapshot.units.get(key, 0)) for key in variants}


def daily_entries(timeline: Timeline, snapshots: Sequence[Snapshot], metrics: Sequence[MetricDefinition],
                  variants: Sequence[str]) -> tuple[DailySnapshot, ...]:  # fmt: skip
    entries = []
    for index, snapshot in enumerate(snapshots):
        entries.append(DailySnapshot(
            date=timeline.day(index), final=timeline.is_final(index), variants=variant_units(snapshot, variants),
            metrics=metric_entries(metrics, snapshot, variants),
        ))  # fmt: skip
    return tuple(entries)


def empty_snapshot() -> Snapshot:
    return Snapshot({}, {})
