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
their sums. The values (a unit's equal values as one row with their count) are
hash-partitioned by group, and each group is computed whole in one Python worker, which sorts
its values once in numpy (`block`): a group holds at most the events of one variant, and no
Spark sort or window runs over the values (a window per group sorted the same rows and then
joined them back to every value; `groupBy().applyInArrow` sorts them all by five strings).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from services.common.catalog import MetricDefinition
from services.common.results import MAX_SLICE_VALUES, MISSING_SLICE, OTHER_SLICE
from services.metrics.job.transforms import (
    ARROW_TYPES,
    EVENT_VALUE,
    MICROS,
    SUM_VALUE,
    SUMS,
    local_frame,
    ratio_denominator,
    role_amounts,
    unit_value,
    unit_vector,
    unpacked_records,
)

OVERALL = ""  # the `dimension` and `slice` of a quantile over the whole variant (never a dimension name)
QUANTILE_GROUP = ("experiment", "metric", "dimension", "slice", "variant")
# scipy.special.ndtri(0.975), as services/scorecard/stats/quantile.py computes z for its
# OUTER_WINDOW_ALPHA = 0.05 (statistics.NormalDist differs in the last bit); a test pins it.
OUTER_WINDOW_Z = 1.959963984540054


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


Probabilities = dict[tuple[str, str], tuple[float, int, int]]  # (experiment, metric) -> p, p_num, p_den


def quantile_probabilities(metrics: Mapping[str, Sequence[MetricDefinition]]) -> Probabilities:
    """(experiment, metric) -> (p, p_num, p_den): each quantile metric's p, and p's decimal
    literal as the exact fraction p_num / p_den (0.3 is 3/10, so ceil(10 p) is 3, not 4)."""
    probabilities: Probabilities = {}
    for key, metric in ((key, m) for key, defined in metrics.items() for m in defined if m.type == "quantile"):
        assert metric.quantile is not None  # guaranteed by the catalog
        exact = Fraction(repr(metric.quantile))
        probabilities[(key, metric.name)] = (metric.quantile, exact.numerator, exact.denominator)
    return probabilities


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


BLOCK_DDL = ", ".join([
    *(f"{name} string" for name in QUANTILE_GROUP), "n_events long", "probability double", "lower_probability double",
    "upper_probability double", "value long", "lower_value long", "upper_value long", "events_below long",
    "events_below_squares long", "events_squares long", "events_products long",
])  # fmt: skip
BLOCK_SCHEMA = pa.schema([(name, ARROW_TYPES[kind]) for name, kind in (f.split(" ") for f in BLOCK_DDL.split(", "))])
EXACT_COUNTS = 2**31  # below it, every count, square and product sum of a block fits in 64 bits


def quantile_rank(n_events: int, p_num: int, p_den: int) -> int:
    """max(1, ceil(n p)) for p = p_num / p_den, in exact integer arithmetic."""
    return max(1, -(-n_events * p_num // p_den))


def window_rank(n_events: int, probability: float) -> int:
    """max(1, min(N, ceil(N p))) for an outer-window probability (a double: floating point)."""
    return min(n_events, max(1, math.ceil(n_events * probability)))


def block(probabilities: Probabilities, group: Sequence[str], units: np.ndarray, values: np.ndarray,
          counts: np.ndarray) -> list[object]:  # fmt: skip
    """One QUANTILE_GROUP's counted values -> its block's row (`BLOCK_DDL`). Per value: its
    unit (a non-negative code, one per unit), the value in millionths, how many times it counts.
    The order statistic of rank r is the first value, in ascending order, at which the running
    count reaches r; S_u counts a unit's events at or below the p-quantile, M_u all of them."""
    probability, p_num, p_den = probabilities[(group[0], group[1])]
    order = np.argsort(values, kind="stable")
    ordered, running = values[order], np.cumsum(counts[order])
    n_events = int(running[-1])

    def order_statistic(rank: int) -> int:
        return int(ordered[np.searchsorted(running, rank, side="left")])

    quantile = order_statistic(quantile_rank(n_events, p_num, p_den))
    lower_p, upper_p = outer_window_probabilities(probability, n_events)
    # Float weights are exact here: every partial sum is at most n_events < 2**53.
    below = np.bincount(units, weights=np.where(values <= quantile, counts, 0)).astype(np.int64)
    sizes = np.bincount(units, weights=counts).astype(np.int64)
    if n_events >= EXACT_COUNTS:  # sums of squares could leave 64 bits: Python integers
        below, sizes = below.astype(object), sizes.astype(object)
    windows = [order_statistic(window_rank(n_events, p)) for p in (lower_p, upper_p)]
    sums = [int(below.sum()), int((below * below).sum()), int((sizes * sizes).sum()), int((below * sizes).sum())]
    return [*group, n_events, probability, lower_p, upper_p, quantile, *windows, *sums]


# Packed counted values (`unitmath` gives those of a group in one partition of units as one
# binary value): a unit's index in its partition, a value in millionths, how many times it counts.
VALUE_RECORD = np.dtype([("unit", "<i8"), ("v", "<i8"), ("count", "<i8")])


def group_values(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One group's rows, each either one value (unit_id, v, count) or a partition's packed values
    of the group (`values`) -> (unit code, value, count) per counted value, as `block`
    reads them. The single values' units are numbered by their unit_id; each packed row's come
    after those, offset so no two rows share a code (its units are those of one partition)."""
    single = table.filter(pc.is_null(table["values"]))
    owner, records = unpacked_records(table.filter(pc.is_valid(table["values"]))["values"], VALUE_RECORD)
    units = pc.dictionary_encode(single["unit_id"]).combine_chunks().indices.to_numpy().astype(np.int64)
    stride = int(records["unit"].max(initial=-1)) + 1
    packed_units = single.num_rows + owner * stride + records["unit"]
    return (np.concatenate([units, packed_units]),
            np.concatenate([single["v"].to_numpy(), records["v"]]),
            np.concatenate([single["count"].to_numpy(), records["count"]]))  # fmt: skip


def partition_blocks(probabilities: Probabilities, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """One partition's rows (QUANTILE_GROUP, then what `group_values` reads), several groups whole -> one batch of
    their blocks: the rows sorted by group in Arrow, each group's slice to `block`."""
    parts = [batch for batch in batches if batch.num_rows]
    if not parts:
        return
    table = pa.Table.from_batches(parts)
    table = table.take(pc.sort_indices(table, [(name, "ascending") for name in QUANTILE_GROUP]))
    codes = [pc.dictionary_encode(table[name], null_encoding="encode").combine_chunks().indices.to_numpy()
             for name in QUANTILE_GROUP]  # fmt: skip
    changed = np.zeros(table.num_rows, dtype=bool)
    changed[0] = True
    for code in codes:
        changed[1:] |= code[1:] != code[:-1]
    bounds = [*np.flatnonzero(changed).tolist(), table.num_rows]
    keys = table.select(list(QUANTILE_GROUP)).take(pa.array(bounds[:-1])).to_pylist()
    rows = [dict(zip(BLOCK_SCHEMA.names,
                     block(probabilities, list(key.values()), *group_values(table.slice(start, end - start))),
                     strict=True))
            for key, start, end in zip(keys, bounds[:-1], bounds[1:], strict=True)]  # fmt: skip
    yield pa.RecordBatch.from_pylist(rows, BLOCK_SCHEMA)


def quantile_blocks(values: DataFrame | None, probabilities: Probabilities, partitions: int,
                    packed: DataFrame | None = None) -> DataFrame:  # fmt: skip
    """QUANTILE_GROUP -> n_events, value, lower/upper probability and value, and the S_u / M_u
    sums. `values`: QUANTILE_GROUP + (unit_id, v, count) rows (`sliced_values`); `packed`:
    (experiment, metric, variant, values), packed VALUE_RECORDs of the whole variant (dimension
    and slice OVERALL) from the per-unit arrays. Both hash-partitioned by group into
    `partitions`, each partition's groups in one Python worker (`partition_blocks`). Not
    `groupBy().applyInArrow`: Spark would sort every value by the group's five strings first."""
    group = list(QUANTILE_GROUP)
    frames = []
    if values is not None:
        micros = (F.col("v") * F.lit(MICROS)).cast("long").alias("v")
        frames.append(values.select(*group, "unit_id", micros, "count", F.lit(None).cast("binary").alias("values")))
    if packed is not None:
        frames.append(packed.select(
            "experiment", "metric", F.lit(OVERALL).alias("dimension"), F.lit(OVERALL).alias("slice"), "variant",
            F.lit(None).cast("string").alias("unit_id"), F.lit(None).cast("long").alias("v"),
            F.lit(None).cast("long").alias("count"), "values",
        ))  # fmt: skip
    assert frames, "quantile_blocks needs values or packed values"
    rows = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    kept = dict(probabilities)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from partition_blocks(kept, batches)

    blocks = rows.repartition(partitions, *group).mapInArrow(run, BLOCK_DDL)
    exact = {name: (F.col(name).cast("decimal(20,0)") / F.lit(MICROS)).cast(EVENT_VALUE).alias(name)
             for name in ("value", "lower_value", "upper_value")}  # fmt: skip
    return blocks.select(*[exact.get(name, F.col(name)) for name in blocks.columns])
