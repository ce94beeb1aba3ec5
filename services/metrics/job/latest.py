"""Latest-snapshot transforms: slices by exposure attributes and quantile metrics.

Both only exist for the latest snapshot, so they need none of the per-day delta machinery of
`transforms`: they read the classified events of each unit's latest segment (the one with
`seg_end` null, whose `first_us` is the unit's first exposure at as-of) and aggregate once.
They run only for the experiments that have dimensions or quantile metrics; every frame
carries `experiment`, so one pass serves all of them.

Slices. A unit's segment for a dimension is the value of that attribute on its first
exposure: the de-duplicated exposure with the earliest time, ties broken by the smallest
`event_id` (a late exposure that is earlier moves it, as it moves the first exposure). Per
(experiment, dimension) the MAX_SLICE_VALUES values with the most analysed units keep their
own slice (ties: the smaller value first); the rest, and values spelt like the reserved
labels, go to OTHER_SLICE; units whose first exposure lacks the attribute go to MISSING_SLICE.
So the slices of a dimension partition the analysed units: their sums add up to the overall
ones exactly (fixed-point decimals). A slice's `n` is its units; units without events add
nothing to the other sums, so only units with events are aggregated.

Quantiles. Over the values of the events each quantile metric counts (after de-duplication,
inside the window, latest segment, analysed units; events without a value are left out),
per (experiment, metric, slice, variant): N, the order statistics x_(k) at k = max(1,
ceil(N p)) (exact: p as its decimal literal, integer arithmetic) and at the outer window
p_L, p_U (`outer_window_probabilities`), then per unit S_u (events <= x_(k)) and M_u and
their sums. The order statistics come from a histogram of distinct values and its running
count (a window per group), never a sort of every event in one task.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from services.common.catalog import MetricDefinition
from services.common.results import MAX_SLICE_VALUES, MISSING_SLICE, OTHER_SLICE
from services.metrics.job.transforms import (
    EVENT_VALUE,
    SUM_VALUE,
    SUMS,
    local_frame,
    ratio_denominator,
    role_amounts,
    unit_value,
    unit_vector,
)

OVERALL = ""  # the `dimension` and `slice` of a quantile over the whole variant (never a dimension name)
QUANTILE_GROUP = ("experiment", "metric", "dimension", "slice", "variant")
# scipy.special.ndtri(0.975), as services/scorecard/stats/quantile.py computes z for its
# OUTER_WINDOW_ALPHA = 0.05 (statistics.NormalDist differs in the last bit); a test pins it.
OUTER_WINDOW_Z = 1.959963984540054
EXACT = "decimal(38,0)"


def outer_window_probabilities(probability: float, n_events: int) -> tuple[float, float]:
    """p -+ z sqrt(p (1 - p) / N): the outer window at which the job reads the order statistics.

    A copy of services/scorecard/stats/quantile.py `outer_window_probabilities` (services do not
    import each other); `outer_window` below is the same formula as Spark columns."""
    halfwidth = OUTER_WINDOW_Z * math.sqrt(probability * (1.0 - probability) / n_events)
    return (probability - halfwidth, probability + halfwidth)


def dimensions_frame(spark: SparkSession, dimensions: Mapping[str, Sequence[str]]) -> DataFrame:
    """One row per (experiment, dimension)."""
    rows = [(key, name) for key, names in dimensions.items() for name in names]
    return local_frame(spark, rows, "experiment string, dimension string")


def first_exposure_attributes(exposures: DataFrame, experiments: Iterable[str]) -> DataFrame:
    """De-duplicated exposures -> (experiment, unit_id, attributes) of each unit's first
    exposure (earliest time, then smallest event_id), for these experiments."""
    rows = exposures.where(F.col("experiment").isin(sorted(experiments)))
    first = rows.groupBy("experiment", "unit_id").agg(F.min(F.struct("ts_us", "event_id", "attributes")).alias("first"))
    return first.select("experiment", "unit_id", F.col("first.attributes").alias("attributes"))


def slice_members(segments: DataFrame, attributes: DataFrame, dimensions: DataFrame) -> DataFrame:
    """(experiment, unit_id, variant, dimension, raw): each analysed unit once per dimension of
    its experiment, `raw` the attribute on its first exposure (null when absent)."""
    latest = segments.where(F.col("seg_end").isNull() & F.col("included")).select("experiment", "unit_id", "variant")
    joined = latest.join(attributes, ["experiment", "unit_id"]).join(F.broadcast(dimensions), "experiment")
    raw = F.try_element_at(F.map_from_entries("attributes"), F.col("dimension"))
    return joined.select("experiment", "unit_id", "variant", "dimension", raw.alias("raw"))


def slice_labels(members: DataFrame) -> DataFrame:
    """Members -> (experiment, unit_id, variant, dimension, slice): the top MAX_SLICE_VALUES
    values by units keep their own slice, the others are OTHER_SLICE, absent ones MISSING_SLICE."""
    rankable = members.where(F.col("raw").isNotNull() & ~F.col("raw").isin(OTHER_SLICE, MISSING_SLICE))
    counts = rankable.groupBy("experiment", "dimension", "raw").agg(F.count(F.lit(1)).alias("units"))
    order = Window.partitionBy("experiment", "dimension").orderBy(F.desc("units"), F.asc("raw"))
    ranked = counts.select("experiment", "dimension", "raw", F.row_number().over(order).alias("rank"))
    top = ranked.where(F.col("rank") <= MAX_SLICE_VALUES).select(
        "experiment", "dimension", "raw", F.lit(True).alias("top")
    )
    labelled = members.join(top, ["experiment", "dimension", "raw"], "left")
    label = F.when(F.col("raw").isNull(), MISSING_SLICE).when(F.col("top"), F.col("raw")).otherwise(OTHER_SLICE)
    return labelled.select("experiment", "unit_id", "variant", "dimension", label.alias("slice"))


def slice_units(labels: DataFrame) -> DataFrame:
    """(experiment, dimension, slice, variant) -> analysed units."""
    return labels.groupBy("experiment", "dimension", "slice", "variant").agg(F.count(F.lit(1)).alias("units"))


def _latest(classified: DataFrame, experiments: Iterable[str]) -> DataFrame:
    analysed = F.col("seg_end").isNull() & F.col("included")
    return classified.where(analysed & F.col("experiment").isin(sorted(experiments)))


def slice_sums(classified: DataFrame, labels: DataFrame, experiments: Iterable[str]) -> DataFrame:
    """(experiment, dimension, slice, metric, variant) -> SUMS over the slice's units with events."""
    amounts = _latest(classified, experiments).select("experiment", "unit_id", "metric", "kind", *role_amounts())
    totals = amounts.groupBy("experiment", "unit_id", "metric", "kind").agg(
        *[F.sum(name).alias(name) for name in ("num", "den", "pre")]
    )
    terms = unit_vector(unit_value(F.col("num")), unit_value(F.col("pre")), ratio_denominator(F.col("den")))
    values = totals.select("experiment", "unit_id", "metric", *[terms[n].cast(SUM_VALUE).alias(n) for n in SUMS])
    joined = values.join(labels, ["experiment", "unit_id"])
    return joined.groupBy("experiment", "dimension", "slice", "metric", "variant").agg(
        *[F.sum(name).alias(name) for name in SUMS]
    )


def quantile_probabilities(spark: SparkSession, metrics: Mapping[str, Sequence[MetricDefinition]]) -> DataFrame:
    """(experiment, metric, p, p_num, p_den): each quantile metric's p, and p's decimal literal
    as the exact fraction p_num / p_den (0.3 is 3/10, so ceil(10 p) is 3, not 4)."""
    rows = []
    for key, metric in ((key, m) for key, defined in metrics.items() for m in defined if m.type == "quantile"):
        assert metric.quantile is not None  # guaranteed by the catalog
        exact = Fraction(repr(metric.quantile))
        rows.append((key, metric.name, metric.quantile, str(exact.numerator), str(exact.denominator)))
    return local_frame(spark, rows, "experiment string, metric string, p double, p_num string, p_den string")


def quantile_values(classified: DataFrame, experiments: Iterable[str]) -> DataFrame:
    """(experiment, metric, variant, unit_id, v, count): every value counted in a quantile
    metric at the latest snapshot, once per row (count 1)."""
    value = F.col("value").try_cast(EVENT_VALUE)
    counted = F.col("post") & (F.col("role") == "num") & (F.col("kind") == "quantile") & value.isNotNull()
    return (
        _latest(classified, experiments)
        .where(counted)
        .select("experiment", "metric", "variant", "unit_id", value.alias("v"), F.lit(1).cast("long").alias("count"))
    )


def sliced_values(values: DataFrame, labels: DataFrame | None) -> DataFrame:
    """`quantile_values` rows -> QUANTILE_GROUP + (unit_id, v, count): every counted value once
    for the whole variant (dimension and slice OVERALL) and once per slice of the unit."""
    overall = values.select(*values.columns, F.lit(OVERALL).alias("dimension"), F.lit(OVERALL).alias("slice"))
    if labels is None:
        return overall
    sliced = values.join(labels.select("experiment", "unit_id", "dimension", "slice"), ["experiment", "unit_id"])
    return overall.unionByName(sliced)


def _rank() -> Column:
    """max(1, ceil(n p_num / p_den)) in exact integer arithmetic (decimals of scale 0)."""
    n, a, b = (f"cast({name} as {EXACT})" for name in ("n", "p_num", "p_den"))
    return F.greatest(F.lit(1).cast("long"), F.expr(f"({n} * {a} + {b} - 1) div {b}").cast("long"))


def outer_window(p: Column, n_events: Column) -> tuple[Column, Column]:
    """`outer_window_probabilities` as columns (same operations, same order: the same doubles)."""
    halfwidth = F.lit(OUTER_WINDOW_Z) * F.sqrt(p * (F.lit(1.0) - p) / n_events.cast("double"))
    return p - halfwidth, p + halfwidth


def _window_rank(n_events: Column, probability: Column) -> Column:
    """max(1, min(N, ceil(N p))) for an outer-window probability (a double: floating point)."""
    return F.least(n_events, F.greatest(F.lit(1).cast("long"), F.ceil(n_events.cast("double") * probability)))


def quantile_blocks(values: DataFrame, probabilities: DataFrame) -> DataFrame:
    """QUANTILE_GROUP -> n_events, value, lower/upper probability and value, and the S_u / M_u sums."""
    group = list(QUANTILE_GROUP)
    histogram = values.groupBy(*group, "v").agg(F.sum("count").alias("count"))
    running = Window.partitionBy(*group).orderBy("v").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    cumulative = histogram.select(
        *group,
        "v",
        F.sum("count").over(running).alias("cum"),
        F.sum("count").over(Window.partitionBy(*group)).alias("n"),
    ).join(F.broadcast(probabilities), ["experiment", "metric"])
    lower_p, upper_p = outer_window(F.col("p"), F.col("n"))
    ranked = cumulative.select(
        *group, "v", "cum", "n", "p", lower_p.alias("lower_p"), upper_p.alias("upper_p"),
        _rank().alias("k"),
    )  # fmt: skip

    def order_statistic(rank: Column) -> Column:
        return F.min(F.when(F.col("cum") >= rank, F.col("v")))

    picks = ranked.groupBy(*group).agg(
        F.first("n").alias("n_events"), F.first("p").alias("probability"),
        F.first("lower_p").alias("lower_probability"), F.first("upper_p").alias("upper_probability"),
        order_statistic(F.col("k")).alias("value"),
        order_statistic(_window_rank(F.col("n"), F.col("lower_p"))).alias("lower_value"),
        order_statistic(_window_rank(F.col("n"), F.col("upper_p"))).alias("upper_value"),
    )  # fmt: skip
    per_unit = (
        values.join(picks.select(*group, F.col("value").alias("quantile")), group)
        .groupBy(*group, "unit_id")
        .agg(
            F.sum("count").alias("m"),
            F.sum(F.when(F.col("v") <= F.col("quantile"), F.col("count")).otherwise(0)).alias("s"),
        )
    )
    s, m = F.col("s"), F.col("m")
    sums = per_unit.groupBy(*group).agg(
        F.sum(s).alias("events_below"), F.sum(s * s).alias("events_below_squares"),
        F.sum(m * m).alias("events_squares"), F.sum(s * m).alias("events_products"),
    )  # fmt: skip
    return picks.join(sums, group)
