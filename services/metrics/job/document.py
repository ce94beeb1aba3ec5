"""Driver side: cumulative snapshot statistics from the job's deltas, and the parts of the
results document (services/common/results.py). Plain Python over a few hundred collected rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from services.common.catalog import MetricDefinition
from services.common.results import (
    MISSING_SLICE,
    OTHER_SLICE,
    CovariateBlock,
    DailySnapshot,
    DataQuality,
    DenominatorBlock,
    MetricResult,
    QuantileBlock,
    SliceResult,
    VariantStatistics,
    VariantUnits,
)
from services.metrics.job.timeline import Timeline
from services.metrics.job.transforms import VECTOR, covariate_lookback_days

Vector = tuple[Decimal, ...]
ZERO: Vector = tuple(Decimal(0) for _ in VECTOR)
# The data-quality counts, in the document's order (its last field is the watermark).
QUALITY_FIELDS = tuple(name for name in DataQuality.model_fields if name != "watermark")


@dataclass(frozen=True)
class Snapshot:
    """Cumulative statistics at one snapshot: units per variant, VECTOR per (metric, variant)
    and, for the latest snapshot, the quantile metrics' blocks per (metric, variant)."""

    units: dict[str, int]
    stats: dict[tuple[str, str], Vector]
    quantiles: dict[tuple[str, str], QuantileBlock] = field(default_factory=dict)


def _add(left: Vector, right: Vector) -> Vector:
    return tuple(a + b for a, b in zip(left, right, strict=True))


def accumulate(metric_deltas: Iterable[Mapping[str, Any]], unit_deltas: Iterable[Mapping[str, Any]],
               days: int) -> list[Snapshot]:  # fmt: skip
    """Prefix sums over snapshot indices 0..days-1 of the deltas collected from Spark. `n` of
    the stats stays 0 (the job's sums leave it out; a delta that carries one is ignored): a
    variant's `n` is its units (see `metric_entry`)."""
    stat_steps: dict[tuple[str, str], dict[int, Vector]] = defaultdict(dict)
    for row in metric_deltas:
        stat_steps[(row["metric"], row["variant"])][row["c"]] = tuple(
            Decimal(0) if n == "n" else Decimal(row[n]) for n in VECTOR
        )
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


def empty_quantile(metric: MetricDefinition) -> QuantileBlock:
    """The block of a variant without events: no order statistics yet."""
    assert metric.quantile is not None  # guaranteed by the catalog for quantile metrics
    return QuantileBlock(
        probability=metric.quantile, n_events=0, value=None, lower_probability=None, upper_probability=None,
        lower_value=None, upper_value=None, events_below=0, events_below_squares=0, events_squares=0,
        events_products=0,
    )  # fmt: skip


def quantile_block(row: Mapping[str, Any]) -> QuantileBlock:
    """A collected `latest.quantile_blocks` row -> its block (values converted to float once)."""
    counts = ("n_events", "events_below", "events_below_squares", "events_squares", "events_products")
    return QuantileBlock(
        probability=row["probability"], value=_number(row["value"]), lower_probability=row["lower_probability"],
        upper_probability=row["upper_probability"], lower_value=_number(row["lower_value"]),
        upper_value=_number(row["upper_value"]), **{name: int(row[name]) for name in counts},
    )  # fmt: skip


def variant_block(
    metric: MetricDefinition, key: str, vector: Vector, quantile: QuantileBlock | None = None
) -> VariantStatistics:
    values = dict(zip(VECTOR, vector, strict=True))
    covariate = denominator = None
    if metric.type == "quantile":
        quantile = quantile or empty_quantile(metric)
    if covariate_lookback_days(metric) > 0:
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
        covariate=covariate, denominator=denominator, quantile=quantile,
    )  # fmt: skip


def _with_units(snapshot: Snapshot, metric: str, key: str) -> Vector:
    return (Decimal(snapshot.units.get(key, 0)), *snapshot.stats.get((metric, key), ZERO)[1:])


def metric_entry(metric: MetricDefinition, snapshot: Snapshot, variants: Sequence[str]) -> MetricResult:
    """Every analysed unit counts in every metric, so a variant's `n` is its units (the job's
    sums leave `n` out: units without events for a metric add nothing else)."""
    blocks = tuple(
        variant_block(metric, key, _with_units(snapshot, metric.name, key), snapshot.quantiles.get((metric.name, key)))
        for key in variants
    )
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
    """Quantile metrics are left out: their order statistics exist for the latest snapshot only."""
    metrics = [metric for metric in metrics if metric.type != "quantile"]
    entries = []
    for index, snapshot in enumerate(snapshots):
        entries.append(DailySnapshot(
            date=timeline.day(index), final=timeline.is_final(index), variants=variant_units(snapshot, variants),
            metrics=metric_entries(metrics, snapshot, variants),
        ))  # fmt: skip
    return tuple(entries)


def empty_snapshot() -> Snapshot:
    return Snapshot({}, {})


@dataclass
class LatestRows:
    """One experiment's collected latest-snapshot rows: slice units and sums, quantile blocks."""

    slice_units: list[dict[str, Any]] = field(default_factory=list)
    slice_sums: list[dict[str, Any]] = field(default_factory=list)
    quantiles: list[dict[str, Any]] = field(default_factory=list)


def quantiles_of(rows: Iterable[Mapping[str, Any]], dimension: str, value: str) -> dict[tuple[str, str], QuantileBlock]:
    """The quantile blocks of one group (the whole experiment: dimension and value OVERALL)."""
    return {(row["metric"], row["variant"]): quantile_block(row) for row in rows
            if (row["dimension"], row["slice"]) == (dimension, value)}  # fmt: skip


def slice_snapshots(rows: LatestRows, metrics: Sequence[MetricDefinition]) -> dict[tuple[str, str], Snapshot]:
    """(dimension, slice) -> its latest statistics; `n` of every metric is the slice's units."""
    units: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for row in rows.slice_units:
        units[(row["dimension"], row["slice"])][row["variant"]] = int(row["units"])
    sums: dict[tuple[str, str, str, str], Vector] = {}
    for row in rows.slice_sums:
        key = (row["dimension"], row["slice"], row["metric"], row["variant"])
        sums[key] = tuple(Decimal(0) if name == "n" else Decimal(row[name]) for name in VECTOR)
    snapshots = {}
    for (dimension, value), counts in units.items():
        stats = {}
        for metric, (variant, count) in ((m.name, item) for m in metrics for item in counts.items()):
            summed = sums.get((dimension, value, metric, variant), ZERO)
            stats[(metric, variant)] = (Decimal(count), *summed[1:])
        snapshots[(dimension, value)] = Snapshot(counts, stats, quantiles_of(rows.quantiles, dimension, value))
    return snapshots


def slice_order(dimensions: Sequence[str], snapshots: Mapping[tuple[str, str], Snapshot]) -> list[tuple[str, str]]:
    """Dimensions in declared order; within one, values by units (descending, then by value),
    then OTHER_SLICE, then MISSING_SLICE."""

    def rank(key: tuple[str, str]) -> tuple[int, int, str]:
        value = key[1]
        bucket = {OTHER_SLICE: 1, MISSING_SLICE: 2}.get(value, 0)
        return bucket, -sum(snapshots[key].units.values()), value

    by_dimension = {name: sorted((key for key in snapshots if key[0] == name), key=rank) for name in dimensions}
    return [key for name in dimensions for key in by_dimension[name]]


def slice_entries(dimensions: Sequence[str], snapshots: Mapping[tuple[str, str], Snapshot],
                  metrics: Sequence[MetricDefinition], variants: Sequence[str]) -> tuple[SliceResult, ...]:  # fmt: skip
    return tuple(
        SliceResult(
            dimension=dimension,
            value=value,
            variants=variant_units(snapshots[(dimension, value)], variants),
            metrics=metric_entries(metrics, snapshots[(dimension, value)], variants),
        )
        for dimension, value in slice_order(dimensions, snapshots)
    )
