"""Pure DataFrame -> DataFrame transforms of the metrics job; parameters are passed in.

Pipeline (names are the functions below):
    lake rows -> with_micros -> experiment_exposures -> first_received -> with_entry_index
    -> unit_segments (exposures); relevant_events -> distinct_events -> exposed_events (joined
    by unit to the segments; `conflicting_rows` for ids whose copies disagree or whose hashes
    repeat) -> with_entry_index -> segment_event_rows -> classify_events -> metric_increments
    -> unit_metric_values -> contribution_deltas

The events and the segments are hash-partitioned by `unit_id` into the same number of
partitions (`distinct_events`; the caller partitions the exposures), and every later grouping
and window key includes `unit_id`, so after the events' one exchange nothing moves until the
per-variant sums.

One pass computes any number of experiments: every frame from `experiment_exposures` and
`exposed_events` on carries `experiment`, every grouping and window key includes it, and
what differs between experiments (timeline, metrics, windows, CUPED lookback) comes in as
small per-experiment frames (`timeline_frame`, `event_scopes`, `metric_roles`,
`metric_kinds`) joined in, so each experiment's numbers are exactly what it gets alone.

A unit's *segment* is a stretch of snapshots over which its exposure state (first exposure
time, variant, single/multiple variants) is constant; late exposures can start a new one.
Values are fixed-point decimals, so sums are exact and do not depend on partitioning or
summation order: re-running on the same lake gives the same digits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from services.common.catalog import MetricDefinition
from services.metrics.job.timeline import DAY_US, HOUR_US, Timeline

EVENT_VALUE = T.DecimalType(20, 6)  # one event's value (|value| < 1e12 is enforced at ingest)
UNIT_VALUE = T.DecimalType(28, 6)  # one unit's metric value
SUM_VALUE = T.DecimalType(38, 6)  # sums over units and products
# The same fixed point as 64-bit integers of millionths (`micros=True` below): Spark keeps
# decimals wider than 18 digits as objects, longs as longs. Every value is the decimal's
# unscaled integer and every product is rounded to millionths half away from zero, as Spark
# rounds decimal(38,6) products, so both give the same digits; with ANSI mode (Spark 4's
# default) a long that would overflow raises instead of wrapping, and the caller then
# computes in decimals (`aggregate.contribution_rows`). Sums over units are taken in two 32-bit
# halves (columns `<sum>_hi`, `<sum>_lo`) that cannot overflow below 2^31 rows and are joined
# in Python (`from_micros`).
MICROS = 1_000_000
LOW_BITS = 32
ATTRIBUTE_ENTRIES = T.ArrayType(
    T.StructType([T.StructField("key", T.StringType()), T.StructField("value", T.StringType())])
)
EXPOSURE_COLUMNS = (
    "event_id",
    "unit_id",
    "variant",
    "ts_us",
    "received_us",
    "kafka_partition",
    "kafka_offset",
)
EVENT_COLUMNS = (
    "event_id",
    "unit_id",
    "name",
    "value",
    "ts_us",
    "received_us",
    "kafka_partition",
    "kafka_offset",
)
SEGMENT_KEYS = ("experiment", "unit_id", "metric", "kind", "seg_start", "variant", "included")
# The per-unit contribution to a variant's sufficient statistics, in a fixed order.
VECTOR = ("n", "sum", "sum_squares", "cov_sum", "cov_sum_squares", "cov_sum_products",
          "den_sum", "den_sum_squares", "den_sum_products", "cov_den_products")  # fmt: skip
# What the job sums in Spark: all but `n`, which is the variant's analysed units (every one
# counts in every metric), so units without events for a metric need no row of their own.
SUMS = VECTOR[1:]
ROLES_SCHEMA = "experiment string, metric string, kind string, role string, name string, " \
               "use_value boolean, window_us long, lookback_us long"  # fmt: skip
TIMELINE_SCHEMA = "experiment string, day0_us long, latest int, frozen_days int, lateness_us long"
SCOPE_SCHEMA = "experiment string, name string, since_us long"


ARROW_TYPES = {"string": pa.string(), "long": pa.int64(), "int": pa.int32(), "double": pa.float64(),
               "boolean": pa.bool_(), "binary": pa.binary()}  # fmt: skip


def local_frame(spark: SparkSession, rows: Sequence[tuple[object, ...]], ddl: str) -> DataFrame:
    """A small frame from Python rows (`ddl`: "name type, ..." of ARROW_TYPES), handed over as
    one Arrow table: no Python worker on the executors, so broadcasting it costs about half of
    `spark.createDataFrame` on a list (measured: 0.22 s against 0.40 s per frame)."""
    fields = [field.strip().split(" ") for field in ddl.split(",")]
    schema = pa.schema([(name, ARROW_TYPES[kind]) for name, kind in fields])
    table = pa.Table.from_pylist([dict(zip(schema.names, row, strict=True)) for row in rows], schema)
    return spark.createDataFrame(table, ddl)


def packed_records(records: np.ndarray, starts: np.ndarray) -> pa.Array:
    """Records of a structured dtype -> one binary value per run beginning at each of `starts`."""
    offsets = np.append(starts, records.size).astype(np.int32) * records.dtype.itemsize
    return pa.Array.from_buffers(
        pa.binary(), starts.size, [None, pa.py_buffer(offsets), pa.py_buffer(records.tobytes())]
    )


def unpacked_records(column: pa.ChunkedArray | pa.Array, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Binary values of packed `dtype` records -> (the value each record came from, the records)."""
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if values.null_count:
        raise ValueError("a packed value is missing")
    offsets = np.frombuffer(values.buffers()[1], np.int32)[values.offset : values.offset + len(values) + 1]
    sizes = np.diff(offsets)
    if (sizes % dtype.itemsize).any():
        raise ValueError("packed records that are not whole")
    data = values.buffers()[2]
    raw = np.frombuffer(data, np.uint8)[offsets[0] : offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    records = raw.copy().view(dtype)
    return np.repeat(np.arange(len(values)), sizes // dtype.itemsize), records


def with_micros(frame: DataFrame) -> DataFrame:
    """`timestamp`/`received_at` as UTC microseconds (`ts_us`, `received_us`): exact integer maths."""
    return (
        frame.withColumn("ts_us", F.unix_micros("timestamp"))
        .withColumn("received_us", F.unix_micros("received_at"))
        .drop("timestamp", "received_at")
    )


def covariate_lookback_days(metric: MetricDefinition) -> int:
    """Days of CUPED pre-period the metric uses; a quantile metric has no covariate, so its
    `cuped_lookback_days` neither adds a block nor widens the events read."""
    return 0 if metric.type == "quantile" else metric.cuped_lookback_days


def experiment_exposures(exposures: DataFrame, experiments: str | Iterable[str], as_of_us: int,
                         sliced: Iterable[str] = ()) -> DataFrame:  # fmt: skip
    """The exposures of these experiments known at as-of, with `experiment`; for the `sliced`
    experiments (those with dimensions) `attributes` as sorted (key, value) entries (orderable,
    so de-duplication keeps the winning copy's), null for the others (they never read it)."""
    keys = [experiments] if isinstance(experiments, str) else sorted(experiments)
    known = (F.col("ts_us") <= as_of_us) & (F.col("received_us") <= as_of_us)
    with_slices = sorted(sliced)
    entries = F.array_sort(F.map_entries("attributes"))
    attributes = F.when(F.col("experiment").isin(with_slices), entries) if with_slices else F.lit(None)
    return exposures.where(F.col("experiment").isin(keys) & known).select(
        "experiment", *EXPOSURE_COLUMNS, attributes.cast(ATTRIBUTE_ENTRIES).alias("attributes")
    )


def relevant_events(events: DataFrame, names: Iterable[str], since_us: int, as_of_us: int) -> DataFrame:
    """Events the metrics can use: their names, event time in [since, as-of], received by as-of."""
    in_range = F.col("ts_us").between(since_us, as_of_us) & (F.col("received_us") <= as_of_us)
    return events.where(F.col("name").isin(sorted(names)) & in_range).select(*EVENT_COLUMNS)


def event_scopes(spark: SparkSession, scopes: Mapping[str, tuple[Iterable[str], int]]) -> DataFrame:
    """experiment -> (event names its metrics use, earliest event time they can use)."""
    rows = [(key, name, since) for key, (names, since) in scopes.items() for name in sorted(set(names))]
    return local_frame(spark, rows, SCOPE_SCHEMA)


def experiment_events(events: DataFrame, scopes: DataFrame) -> DataFrame:
    """Relevant events (see `relevant_events`, over the union of the experiments' names and
    the earliest start) -> one row per experiment that can use each: its names, event time
    from its own start. De-duplication comes after, per experiment, as in a run of its own."""
    rows = events.join(F.broadcast(scopes), "name").where(F.col("ts_us") >= F.col("since_us"))
    return rows.select("experiment", *EVENT_COLUMNS)


CONTENT = ("name", "ts_us", "unit_id")  # what every copy of one event_id should share
# What a de-duplicated event carries on (the pass persists these): `id_hash` stands for the
# event_id, which nothing after de-duplication compares (see `conflicting_rows`).
DISTINCT_EVENT = ("unit_id", "id_hash", "name", "value", "ts_us", "received_us", "copies", "last_received_us")


def id_hash() -> Column:
    """A 64-bit hash of `event_id`."""
    return F.xxhash64("event_id")


def distinct_events(relevant: DataFrame, partitions: int) -> DataFrame:
    """Relevant event rows -> one row per (`unit_id`, `event_id`) (see `first_received`) with
    the DISTINCT_EVENT columns, plus `consistent`: every copy has the same name and time. One
    exchange, by `unit_id` into `partitions`: the de-duplication groups within it and leaves
    each partition sorted by unit, so the join to the segments (`exposed_events`, partitioned
    the same way) needs no exchange and no sort of the events, and nothing downstream moves
    them again.

    Copies of one event_id under different units land in different groups:
    `hashes_across_units` finds those. For a consistent event (one unit, one content) every
    experiment sees all of its copies or none (its scope is by name and event time), so this
    one de-duplication gives each experiment exactly the winner, `copies` and
    `last_received_us` of de-duplicating its own rows; inconsistent ones (copies that
    disagree, never produced by the SDKs) go through `conflicting_rows` instead."""
    content = F.struct(*[name for name in CONTENT if name != "unit_id"])  # the unit is a key here
    by_unit = relevant.repartition(partitions, "unit_id").withColumn("content", content)
    deduped = first_received(by_unit, check="content", keys=("unit_id", "event_id"))
    return deduped.withColumn("id_hash", id_hash()).select(*DISTINCT_EVENT, "consistent")


def hashes_across_units(distinct: DataFrame, partitions: int) -> DataFrame:
    """`distinct_events` rows -> the `id_hash` values found under more than one unit: every
    event_id under two units or more, and any two ids whose hashes collide (those lose only
    time: `conflicting_rows` de-duplicates them exactly). An exchange of longs, not strings,
    into `partitions`, enough that each hash map stays small."""
    by_hash = distinct.select("id_hash").repartition(partitions, "id_hash")
    return by_hash.groupBy("id_hash").count().where(F.col("count") > 1).select("id_hash")


def conflicting_rows(relevant: DataFrame, hashes: DataFrame, scopes: DataFrame) -> DataFrame:
    """Relevant event rows whose `id_hash` is one of `hashes` -> de-duplicated per experiment
    by event_id, as in a run of its own (exact for any event, whatever its copies say), with
    `experiment` and the DISTINCT_EVENT columns."""
    rows = relevant.join(F.broadcast(hashes), id_hash() == F.col("id_hash"), "left_semi")
    deduped = first_received(experiment_events(rows, scopes))
    return deduped.withColumn("id_hash", id_hash()).select("experiment", *DISTINCT_EVENT)


def scoped_events(events: DataFrame, scopes: DataFrame) -> DataFrame:
    """De-duplicated events (no `experiment`) -> one row per experiment whose scope holds the
    event (its names; event time from its start): a narrow broadcast join, no exchange."""
    rows = events.join(F.broadcast(scopes), "name").where(F.col("ts_us") >= F.col("since_us"))
    return rows.select("experiment", *DISTINCT_EVENT)


def exposed_events(events: DataFrame, segments: DataFrame, scopes: DataFrame) -> DataFrame:
    """De-duplicated events (no `experiment`, hash-partitioned by unit) -> one row per
    segment of the event's unit in an experiment whose scope holds the event. Joined on
    `unit_id` alone, so only the (small) segments move; events of units never exposed stop
    here instead of being carried per experiment."""
    joined = events.join(segments, "unit_id").join(F.broadcast(scopes), ["experiment", "name"])
    return joined.where(F.col("ts_us") >= F.col("since_us")).drop("since_us")


def first_received(frame: DataFrame, check: str | None = None, keys: Sequence[str] | None = None) -> DataFrame:
    """One row per (`experiment`, `event_id`) (per `event_id` when there is no experiment
    column; per `keys` when given): the copy received first wins (ties: Kafka partition, offset).

    Adds `copies` (rows that had this id) and `last_received_us` (latest copy's receipt), and
    with `check` (a column, dropped) `consistent`: every copy has the same value in it.
    """
    order = ["received_us", "kafka_partition", "kafka_offset"]
    if keys is None:
        keys = ["experiment", "event_id"] if "experiment" in frame.columns else ["event_id"]
    rest = [c for c in frame.columns if c not in (*keys, *order, check)]
    consistent = [] if check is None else [F.min(check).eqNullSafe(F.max(check)).alias("consistent")]
    grouped = frame.groupBy(*keys).agg(
        F.min(F.struct(*order, *rest)).alias("winner"),
        F.count(F.lit(1)).alias("copies"),
        F.max("received_us").alias("last_received_us"),
        *consistent,
    )
    return grouped.select(*keys, *[F.col(f"winner.{c}").alias(c) for c in order + rest],
                          "copies", "last_received_us", *(["consistent"] if consistent else []))  # fmt: skip


def timeline_frame(spark: SparkSession, timelines: Mapping[str, Timeline]) -> DataFrame:
    """One row per experiment: its snapshot timeline (see `timeline`)."""
    rows = [(key, t.day0_us, t.latest, t.frozen_days, t.lateness_us) for key, t in timelines.items()]
    return local_frame(spark, rows, TIMELINE_SCHEMA)


def _day_index(column: str, origin: str) -> Column:
    # Truncating division; negative results are clamped to 0 by the callers, where
    # truncation and floor agree.
    return F.expr(f"({column} - ({origin})) div {DAY_US}")


def _clamp(column: Column, low: int, high: str) -> Column:
    return F.least(F.greatest(column, F.lit(low)), F.col(high))


def with_entry_index(frame: DataFrame, timelines: DataFrame) -> DataFrame:
    """Adds `k_time`, `k_received` and `k`: the first snapshot of the row's experiment whose
    time cutoff, received cutoff, and both, cover the row (see `timeline`)."""
    by_time = _clamp(_day_index("ts_us", "day0_us"), 0, "latest")
    by_receipt = _clamp(_day_index("received_us", "day0_us + lateness_us"), 0, "frozen_days")
    return (
        frame.join(F.broadcast(timelines), "experiment")
        .withColumn("k_time", by_time.cast("int"))
        .withColumn("k_received", by_receipt.cast("int"))
        .withColumn("k", F.greatest("k_time", "k_received"))
        .drop("day0_us", "latest", "frozen_days", "lateness_us")
    )


def unit_segments(exposures: DataFrame) -> DataFrame:
    """Exposures (with `k`) -> (experiment, unit_id, seg_start, seg_end, first_segment,
    first_us, variant, included).

    From `seg_start` until `seg_end` (exclusive; null = through the latest snapshot) the
    unit's first exposure is `first_us`; `included` is false when it has seen more than one
    variant (then `variant` is just the smallest key and the unit is left out).
    """
    per_entry = exposures.groupBy("experiment", "unit_id", "k").agg(
        F.min("ts_us").alias("min_ts"),
        F.min("variant").alias("min_variant"),
        F.max("variant").alias("max_variant"),
    )
    ordered = Window.partitionBy("experiment", "unit_id").orderBy("k")
    running = ordered.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    smallest = F.min("min_variant").over(running)
    return per_entry.select(
        "experiment",
        "unit_id",
        F.col("k").alias("seg_start"),
        F.lead("k").over(ordered).alias("seg_end"),
        F.lag("k").over(ordered).isNull().alias("first_segment"),
        F.min("min_ts").over(running).alias("first_us"),
        smallest.alias("variant"),
        (smallest == F.max("max_variant").over(running)).alias("included"),
    )


def segment_events(events: DataFrame, segments: DataFrame) -> DataFrame:
    """Events (with `k`) of exposed units, once per segment they fall in, entering at `c`."""
    return in_segment(events.join(segments, ["experiment", "unit_id"]))


# What later steps read of a (segment, event) row (and all a persisted one holds).
SEGMENT_EVENT = ("experiment", "unit_id", "name", "value", "ts_us", "received_us", "copies", "seg_start", "seg_end",
                 "first_us", "variant", "included", "k_time", "k_received", "c")  # fmt: skip


def in_segment(joined: DataFrame) -> DataFrame:
    """(segment, event) rows with `k` -> those whose entry `c` falls inside the segment."""
    rows = joined.withColumn("c", F.greatest("k", "seg_start"))
    return rows.where(F.col("seg_end").isNull() | (F.col("c") < F.col("seg_end")))


def segment_event_rows(joined: DataFrame) -> DataFrame:
    """`in_segment`, keeping the SEGMENT_EVENT columns."""
    return in_segment(joined).select(*SEGMENT_EVENT)


def metric_roles(spark: SparkSession, metrics: Mapping[str, Sequence[MetricDefinition]]) -> DataFrame:
    """One row per (experiment, metric, role): which event (`name`) feeds the numerator
    ('num') or denominator ('den')."""
    rows = []
    for key, metric in ((key, metric) for key, defined in metrics.items() for metric in defined):
        window = None if metric.window_hours is None else round(metric.window_hours * HOUR_US)
        lookback = covariate_lookback_days(metric) * DAY_US
        measures = [("num", metric.numerator_measure)]
        if metric.denominator is not None:
            measures.append(("den", metric.denominator))
        for role, measure in measures:
            rows.append(
                (key, metric.name, metric.type, role, measure.event, measure.value is not None, window, lookback)
            )
    return local_frame(spark, rows, ROLES_SCHEMA)


def metric_kinds(spark: SparkSession, metrics: Mapping[str, Sequence[MetricDefinition]]) -> DataFrame:
    rows = [(key, metric.name, metric.type) for key, defined in metrics.items() for metric in defined]
    return local_frame(spark, rows, "experiment string, metric string, kind string")


# What later steps read of a classified row.
CLASSIFIED = ("experiment", "unit_id", "metric", "kind", "seg_start", "seg_end", "variant", "included", "c",
              "value", "role", "use_value", "post", "pre")  # fmt: skip


def classify_events(seg_events: DataFrame, roles: DataFrame) -> DataFrame:
    """Joins events to the metric roles they feed; `post`: inside the metric window after the
    first exposure; `pre`: in the CUPED lookback before it (numerator role only). Keeps the
    CLASSIFIED columns."""
    rows = seg_events.join(F.broadcast(roles), ["experiment", "name"])
    ts, first = F.col("ts_us"), F.col("first_us")
    post = (ts >= first) & (F.col("window_us").isNull() | (ts < first + F.col("window_us")))
    pre = (ts >= first - F.col("lookback_us")) & (ts < first) & (F.col("role") == "num")
    classified = rows.withColumn("post", post).withColumn("pre", pre).where(F.col("post") | F.col("pre"))
    return classified.select(*CLASSIFIED)


def event_uses(roles: DataFrame) -> DataFrame:
    """`metric_roles` -> (experiment, name, unbounded, window_us): the widest metric window an
    event of that name can count in (`unbounded`: some metric has none). An event counts in a
    metric of its unit's latest snapshot exactly when its time falls inside that window from
    the unit's first exposure (`classify_events`' `post` for some role)."""
    return roles.groupBy("experiment", "name").agg(
        F.max(F.col("window_us").isNull()).alias("unbounded"), F.max("window_us").alias("window_us")
    )


def role_amounts(micros: bool = False) -> list[Column]:
    """What a classified event adds to its unit's numerator (`num`), denominator (`den`) and
    pre-period (`pre`) sums: its value (0 when it has none) or 1 for counting measures
    (as EVENT_VALUE decimals, or their unscaled longs with `micros`)."""
    decimal = F.col("value").try_cast(EVENT_VALUE)
    if micros:  # exact: the decimal times 10^6 is an integer below 10^18 (ingest bounds values)
        value = F.coalesce((decimal * F.lit(MICROS)).cast("long"), F.lit(0).cast("long"))
        one, zero = F.lit(MICROS).cast("long"), F.lit(0).cast("long")
    else:
        value = F.coalesce(decimal, F.lit(0).cast(EVENT_VALUE))
        one, zero = F.lit(1).cast(EVENT_VALUE), F.lit(0).cast(EVENT_VALUE)
    amount = F.when(F.col("use_value"), value).otherwise(one)

    def part(condition: Column) -> Column:
        return F.when(condition, amount).otherwise(zero)

    return [
        part(F.col("post") & (F.col("role") == "num")).alias("num"),
        part(F.col("post") & (F.col("role") == "den")).alias("den"),
        part(F.col("pre")).alias("pre"),
    ]


def unit_value(total: Column, micros: bool = False) -> Column:
    """A unit's metric value from its summed amounts: for proportion metrics 1 when it has any
    matching event, otherwise the sum itself (mean, ratio, and a quantile metric's `sum`)."""
    kind = "long" if micros else UNIT_VALUE
    one, nothing = F.lit(MICROS if micros else 1).cast(kind), F.lit(0).cast(kind)
    any_event = F.when(total > 0, one).otherwise(nothing)
    return F.when(F.col("kind") == "proportion", any_event).otherwise(total).cast(kind)


def unit_vector(y: Column, x: Column, d: Column) -> dict[str, Column]:
    """A unit's contribution to every VECTOR statistic from its value y, covariate x and denominator d."""
    return {
        "n": F.lit(1), "sum": y, "sum_squares": y * y, "cov_sum": x, "cov_sum_squares": x * x,
        "cov_sum_products": y * x, "den_sum": d, "den_sum_squares": d * d, "den_sum_products": y * d,
        "cov_den_products": d * x,
    }  # fmt: skip


LONG_FACTOR = 3_037_000_499  # the largest |a| with a * a + MICROS / 2 below 2^63


def micro_product(left: str, right: str) -> Column:
    """left x right of two columns of millionths, in millionths: the exact product rounded
    half away from zero (Spark's rounding of a decimal(38,6) product). In longs when both are
    at most LONG_FACTOR (values up to about 3,037), else in decimal(38,0) for that row."""
    product = f"({left} * {right})"
    small = f"abs({left}) <= {LONG_FACTOR} AND abs({right}) <= {LONG_FACTOR}"
    wide = f"CAST(ROUND(CAST({left} AS DECIMAL(19,0)) * CAST({right} AS DECIMAL(19,0)) / {MICROS}, 0) AS BIGINT)"
    return F.expr(f"CASE WHEN {small} THEN (CASE WHEN {product} >= 0 THEN ({product} + {MICROS // 2}) div {MICROS} "
                  f"ELSE -(({MICROS // 2} - {product}) div {MICROS}) END) ELSE {wide} END")  # fmt: skip


def micro_vector() -> dict[str, Column]:
    """`unit_vector` of the columns y, x and d held as millionths."""
    return {
        "n": F.lit(1), "sum": F.col("y"), "sum_squares": micro_product("y", "y"), "cov_sum": F.col("x"),
        "cov_sum_squares": micro_product("x", "x"), "cov_sum_products": micro_product("y", "x"),
        "den_sum": F.col("d"), "den_sum_squares": micro_product("d", "d"),
        "den_sum_products": micro_product("y", "d"), "cov_den_products": micro_product("d", "x"),
    }  # fmt: skip


def metric_increments(classified: DataFrame, segments: DataFrame, metrics: DataFrame,
                      micros: bool = False) -> DataFrame:  # fmt: skip
    """What each classified event adds to its unit segment's numerator, denominator and
    pre-period sums at entry c, plus a zero row at the start of each segment after a unit's
    first (so a unit whose new segment has no events for a metric takes back what it added in
    the previous one). Both come hash-partitioned by unit (the events' and the segments'
    layout), and every later grouping and window includes `unit_id`, so Spark needs no
    exchange until the final per-variant sums. A unit without events for a metric has no row
    (it adds only to `n`: see SUMS)."""
    zero = F.lit(0).cast("long" if micros else EVENT_VALUE)
    moved = event_increments(classified, micros)
    zeros = [zero.alias(name) for name in ("num", "den", "pre")]
    later = segments.where(~F.col("first_segment"))
    starts = later.join(F.broadcast(metrics.select("experiment", "metric", "kind")), "experiment").select(
        *SEGMENT_KEYS, F.col("seg_start").alias("c"), *zeros
    )
    return moved.unionByName(starts)


def event_increments(classified: DataFrame, micros: bool = False) -> DataFrame:
    """What each classified event adds to its unit segment's sums at entry c (the SEGMENT_KEYS,
    `c`, `num`, `den`, `pre`)."""
    return classified.select(*SEGMENT_KEYS, "c", *role_amounts(micros))


def merged_increments(increments: DataFrame) -> DataFrame:
    """Increments summed per (SEGMENT_KEYS, c): one row per entry where a unit's sums change."""
    return increments.groupBy(*SEGMENT_KEYS, "c").agg(*[F.sum(n).alias(n) for n in ("num", "den", "pre")])


def unit_metric_values(increments: DataFrame, micros: bool = False, merged: bool = False) -> DataFrame:
    """Each unit's metric value `y`, denominator `d` and covariate `x` at every entry c where
    anything changed (cumulative within the segment). `merged`: the increments are already
    one row per (SEGMENT_KEYS, c) (`merged_increments`)."""
    merged_rows = increments if merged else merged_increments(increments)
    running = (
        Window.partitionBy("experiment", "unit_id", "metric", "seg_start")
        .orderBy("c")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    num, den, pre = (F.sum(n).over(running) for n in ("num", "den", "pre"))
    return merged_rows.select(
        "experiment", "unit_id", "metric", "variant", "included", "seg_start", "c",
        unit_value(num, micros).alias("y"), unit_value(pre, micros).alias("x"),
        ratio_denominator(den, micros).alias("d"),
    )  # fmt: skip


def ratio_denominator(total: Column, micros: bool = False) -> Column:
    return F.when(F.col("kind") == "ratio", total).otherwise(F.lit(0)).cast("long" if micros else UNIT_VALUE)


def _contribution(values: DataFrame, micros: bool) -> DataFrame:
    terms = micro_vector() if micros else unit_vector(F.col("y"), F.col("x"), F.col("d"))
    kind = "long" if micros else SUM_VALUE
    gated = [F.when(F.col("included"), terms[name]).otherwise(0).cast(kind) for name in SUMS]
    named = [term.alias(name) for term, name in zip(gated, SUMS, strict=True)]
    return values.select("experiment", "unit_id", "metric", "variant", "seg_start", "c", *named)


def contribution_deltas(values: DataFrame, micros: bool = False) -> DataFrame:
    """(experiment, metric, variant, c) -> change of every sufficient statistic but `n` (see
    SUMS) at snapshot c.

    A unit whose value changes at c adds its new contribution and takes back its previous
    one (from the variant it was in), so cumulative sums over c give each snapshot exactly.
    Both come from one pass (explode), not from a union that would run the window twice, and
    in one row (the difference) while the unit stays in its variant. With `micros` the values
    are millionths and each sum comes as two columns `<sum>_hi`, `<sum>_lo` (`from_micros`).
    """
    contribution = _contribution(values, micros)
    kind = "long" if micros else SUM_VALUE
    # A unit's segments cover disjoint ranges of c in order, so (seg_start, c) orders its rows
    # as c does; saying so lets Spark reuse the sort of `unit_metric_values`' window.
    order = Window.partitionBy("experiment", "unit_id", "metric").orderBy("seg_start", "c")
    with_previous = contribution.select(
        "experiment", "metric", "c", "variant", *SUMS,
        F.lag("variant").over(order).alias("prev_variant"),
        *[F.lag(n).over(order).alias(f"prev_{n}") for n in SUMS],
    )  # fmt: skip
    # Usually the unit stays in its variant: one row of differences. Only when it moves (a late
    # exposure) does the old variant get its own row taking the contribution back.
    same = F.col("prev_variant").isNotNull() & (F.col("prev_variant") == F.col("variant"))
    moved = F.col("prev_variant").isNotNull() & (F.col("prev_variant") != F.col("variant"))
    added = F.struct(
        F.col("variant").alias("variant"),
        *[F.when(same, F.col(n) - F.col(f"prev_{n}")).otherwise(F.col(n)).cast(kind).alias(n) for n in SUMS],
    )
    taken_back = F.when(moved, F.struct(
        F.col("prev_variant").alias("variant"), *[(-F.col(f"prev_{n}")).cast(kind).alias(n) for n in SUMS]
    ))  # fmt: skip
    changes = with_previous.select("experiment", "metric", "c", F.explode(F.array(added, taken_back)).alias("change"))
    rows = changes.where(F.col("change").isNotNull()).select("experiment", "metric", "c", "change.*")
    if not micros:
        return rows.groupBy("experiment", "metric", "variant", "c").agg(*[F.sum(n).alias(n) for n in SUMS])
    halves = [part for n in SUMS for part in (
        F.sum(F.shiftright(n, LOW_BITS)).alias(f"{n}_hi"),
        F.sum(F.col(n).bitwiseAND(F.lit((1 << LOW_BITS) - 1).cast("long"))).alias(f"{n}_lo"),
    )]  # fmt: skip
    return rows.groupBy("experiment", "metric", "variant", "c").agg(*halves)


def from_micros(row: dict[str, Any]) -> dict[str, Any]:
    """A row of `contribution_deltas(..., micros=True)` as the decimal path gives it: each sum
    hi * 2^32 + lo millionths, as a Decimal of scale 6 (the same value and exponent)."""
    for name in SUMS:
        sign, digits, _ = Decimal((row.pop(f"{name}_hi") << LOW_BITS) + row.pop(f"{name}_lo")).as_tuple()
        row[name] = Decimal((sign, digits, -6))  # no context: exact at any width
    return row


def unit_count_deltas(segments: DataFrame) -> DataFrame:
    """(experiment, variant, c) -> change in the number of analysed units at snapshot c."""
    included = segments.where(F.col("included"))
    joined = included.select("experiment", "variant", F.col("seg_start").alias("c"), F.lit(1).alias("units"))
    left = included.where(F.col("seg_end").isNotNull()).select(
        "experiment", "variant", F.col("seg_end").alias("c"), F.lit(-1).alias("units")
    )
    return joined.unionByName(left).groupBy("experiment", "variant", "c").agg(F.sum("units").alias("units"))
