"""The per-unit arithmetic of a pass in numpy, one partition of units at a time.

`transforms` states the statistics as Spark frames: every event joined to every segment of
its unit (one row per experiment that exposed the unit), then to every metric role it feeds,
then grouped, windowed twice and summed. With K experiments over the same population that is
K rows per event through three sorts. Here the same arithmetic runs inside one Python worker
per partition of units (`mapInArrow`): Spark moves each event and each segment once, and the
join, the classification, the running sums and the per-variant deltas are numpy arrays, so
the K-fold rows never leave the worker. The same pass gives the latest snapshot's
data-quality counts, over exposed units (`quality.latest_event_summary`) and over each
experiment's scope (`quality.scoped_summary`); the counted values of quantile metrics
(`latest.quantile_values`, one row per unit and value with a count); and, with a horizon, the
per-unit state rows (`unitstate`, packed per unit and segment). The results are those of the
Spark frames, digit for digit (tests compare them on random lakes).

A rerun's additive update (`rerun_rows`) is the same arithmetic over the new events, the
touched units' segments and their kept per-unit rows: what the totals gain (the changed
units' contributions now) less what they lose (the same as kept), and the units' rows now.

Values are 64-bit millionths as in `transforms`. Each partition checks that no running sum,
product or difference can leave 64 bits; when one could, it says so (an OVERFLOW row instead
of its deltas and state rows) and the caller computes those in Spark instead
(`aggregate.contribution_rows`), which is exact at any width.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from services.metrics.job import transforms as tf
from services.metrics.job.latest import VALUE_RECORD
from services.metrics.job.plan import ExperimentPlan
from services.metrics.job.timeline import DAY_US, HOUR_US
from services.metrics.job.unitstate import ROW, UNIT_COLUMNS, horizon

EVENT_TAG, SEGMENT_TAG, KEPT_TAG, EXPOSURE_TAG = 0, 1, 2, 3
# One frame carries both sides of the join (and, in a rerun, the kept per-unit rows), so all
# land in the partition of their unit.
INPUT_DDL = (
    "tag int, unit_id string, experiment string, name string, ts_us long, received_us long, amount long, "
    "valued boolean, copies long, last_received_us long, seg_start int, seg_end int, first_segment boolean, "
    "first_us long, variant string, included boolean, rows binary"
)
# What a partition gives: rows of one `part` each (see `partition_rows`).
DELTAS, QUALITY, QUANTILES, OVERFLOW, UNITS, SCOPED, HARD, UNIT_DELTAS, UNIT_TOTALS = range(9)
QUALITY_COUNTS = ("exposed_in_experiment", "events_before_exposure", "duplicates", "late_events_included",
                  "late_after_freeze")  # fmt: skip
OUTPUT_DDL = ", ".join([
    "part int, experiment string, metric string, variant string, c int, unit_id string, v long, count long",
    *(f"{name}_{half} long" for name in tf.SUMS for half in ("hi", "lo")),
    *(f"{name} long" for name in QUALITY_COUNTS),
    "seg_start int, seg_end int, first_segment boolean, first_us long, included boolean, rows binary",
    "scoped long, in_experiment long, watermark_us long, units long, multiple_variant_units long",
])  # fmt: skip
KIND_MEAN, KIND_PROPORTION, KIND_RATIO, KIND_QUANTILE = 0, 1, 2, 3
# `_group_sums` sums without a sort below these (its float64 sums are exact below 2^21 rows).
COUNTED_ROWS, COUNTED_GROUPS = 1 << 21, 1 << 22
SAFE = 1 << 62  # below this, a sum of two values (or a difference) stays inside 64 bits
NONE = np.iinfo(np.int64).max


@dataclass(frozen=True)
class UnitPlan:
    """What the partitions need of the pass's experiments, as small arrays (shipped with the
    function): experiment i's timeline and start, which events it reads (`since[i, name]`,
    NONE: not in scope), its metrics, the metric roles each event name feeds, and the widest
    window an event of each name counts in (`transforms.event_uses`)."""

    experiments: tuple[str, ...]
    names: tuple[str, ...]
    day0: np.ndarray
    latest: np.ndarray
    frozen: np.ndarray
    lateness: np.ndarray
    start: np.ndarray  # the experiment's first exposure
    since: np.ndarray  # [experiment, name]
    use_unbounded: np.ndarray  # [experiment, name]: some metric of the name has no window
    use_window: np.ndarray  # [experiment, name]: the widest window (-1: no metric reads the name)
    metric_names: tuple[str, ...]  # one per (experiment, metric); m indexes these
    metric_experiment: np.ndarray
    metric_kind: np.ndarray
    metric_types: tuple[str, ...]  # the catalog's type of each
    metrics_from: np.ndarray  # [experiment]: its metrics are metrics_from[i] .. metrics_from[i + 1]
    metric_rank: np.ndarray  # m -> the rank of its name among its experiment's (how the per-unit state names it)
    ranked_metric: np.ndarray  # [experiment, rank] -> m (-1: none)
    roles_from: np.ndarray  # [experiment, name] -> first role; roles of (i, name) are contiguous
    roles_count: np.ndarray
    early_count: np.ndarray  # [experiment, name]: its first roles that count events before exposure (CUPED)
    role_metric: np.ndarray
    role_num: np.ndarray
    role_value: np.ndarray  # the event's value (else: 1 per event)
    role_window: np.ndarray  # -1: no window
    role_lookback: np.ndarray
    sliced: np.ndarray  # [experiment]: it has dimensions (its quantile values come as rows, see `_Units.quantiles`)
    late_threshold_us: int
    horizon: np.ndarray | None  # [experiment]: with per-unit state to keep, its horizon

    @classmethod
    def build(cls, plans: Mapping[str, ExperimentPlan], late_threshold_us: int, keep_units: bool = False) -> UnitPlan:
        """`keep_units`: the partitions also give each unit's rows for the per-unit state
        (`unitstate`)."""
        experiments = tuple(sorted(plans))
        names = tuple(sorted(set().union(*(plans[key].event_names for key in experiments))))
        shape = (len(experiments), len(names))
        since = np.full(shape, NONE, np.int64)
        use_unbounded, use_window = np.zeros(shape, bool), np.full(shape, -1, np.int64)
        metric_names: list[str] = []
        metric_experiment: list[int] = []
        metric_kind: list[int] = []
        metric_types: list[str] = []
        metrics_from = [0]
        roles: list[tuple[int, int, int, bool, bool, int, int]] = []
        kinds = {"proportion": KIND_PROPORTION, "ratio": KIND_RATIO, "quantile": KIND_QUANTILE}
        for i, key in enumerate(experiments):
            plan = plans[key]
            for name in plan.event_names:
                since[i, names.index(name)] = plan.since_us
            for metric in plan.metrics:
                m = len(metric_names)
                metric_names.append(metric.name)
                metric_experiment.append(i)
                metric_kind.append(kinds.get(metric.type, KIND_MEAN))
                metric_types.append(metric.type)
                window = -1 if metric.window_hours is None else round(metric.window_hours * HOUR_US)
                lookback = tf.covariate_lookback_days(metric) * DAY_US
                measures = [(True, metric.numerator_measure)]
                if metric.denominator is not None:
                    measures.append((False, metric.denominator))
                for num, measure in measures:
                    n = names.index(measure.event)
                    roles.append((i, n, m, num, measure.value is not None, window, lookback))
                    use_unbounded[i, n] |= window < 0
                    use_window[i, n] = max(use_window[i, n], window)
            metrics_from.append(len(metric_names))
        # Per (experiment, name), the roles with a pre-period first, so an event before the
        # unit's exposure expands to those only (`_Units.classified`).
        roles.sort(key=lambda role: (role[0], role[1], not (role[3] and role[6] > 0)))
        roles_from, roles_count = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        early_count = np.zeros(shape, np.int64)
        for index, (i, n, _, num, _, _, lookback) in enumerate(roles):
            if not roles_count[i, n]:
                roles_from[i, n] = index
            roles_count[i, n] += 1
            early_count[i, n] += num and lookback > 0
        role_columns = list(zip(*roles, strict=True)) if roles else [()] * 7

        rank = np.zeros(len(metric_names), np.int64)
        ranked = np.full((len(experiments), max(np.diff(metrics_from), default=0)), -1, np.int64)
        for i in range(len(experiments)):
            by_name = sorted(range(metrics_from[i], metrics_from[i + 1]), key=metric_names.__getitem__)
            for r, m in enumerate(by_name):
                rank[m], ranked[i, r] = r, m

        def timeline(attribute: str) -> np.ndarray:
            return np.array([getattr(plans[key].timeline, attribute) for key in experiments], np.int64)

        return cls(
            experiments=experiments, names=names, day0=timeline("day0_us"), latest=timeline("latest"),
            frozen=timeline("frozen_days"), lateness=timeline("lateness_us"),
            start=np.array([plans[key].start_us for key in experiments], np.int64), since=since,
            use_unbounded=use_unbounded, use_window=use_window, metric_names=tuple(metric_names),
            metric_experiment=np.array(metric_experiment, np.int64), metric_kind=np.array(metric_kind, np.int64),
            metric_types=tuple(metric_types),
            metrics_from=np.array(metrics_from, np.int64), metric_rank=rank, ranked_metric=ranked,
            roles_from=roles_from, roles_count=roles_count, early_count=early_count,
            role_metric=np.array(role_columns[2], np.int64), role_num=np.array(role_columns[3], bool),
            role_value=np.array(role_columns[4], bool), role_window=np.array(role_columns[5], np.int64),
            role_lookback=np.array(role_columns[6], np.int64),
            sliced=np.array([bool(plans[key].dimensions) for key in experiments], bool),
            late_threshold_us=late_threshold_us,
            horizon=np.array([horizon(plans[key].timeline) for key in experiments], np.int64) if keep_units else None,
        )  # fmt: skip


def amount() -> Column:
    """An event's value as millionths (0 without one), as `transforms.role_amounts` reads it."""
    decimal = F.col("value").try_cast(tf.EVENT_VALUE)
    return F.coalesce((decimal * F.lit(tf.MICROS)).cast("long"), F.lit(0).cast("long"))


def event_values() -> dict[str, Column]:
    """An event's INPUT columns `amount` (see `amount`) and `valued` (it has a value)."""
    return {"amount": amount(), "valued": F.col("value").try_cast(tf.EVENT_VALUE).isNotNull()}


INPUT_TYPES = dict(field.split(" ") for field in INPUT_DDL.split(", "))
SEGMENT_COLUMNS = ("unit_id", "experiment", "seg_start", "seg_end", "first_segment", "first_us", "variant", "included")
EXPOSURE_COLUMNS = ("unit_id", "experiment", "ts_us", "received_us", "variant")  # what segments come from


def input_rows(distinct: DataFrame, conflicting: DataFrame | None, segments: DataFrame | None, partitions: int,
               kept: DataFrame | None = None, exposures: DataFrame | None = None) -> DataFrame:  # fmt: skip
    """The events (de-duplicated; `conflicting` ones carry their experiment), the segments (or
    the de-duplicated `exposures` they come from, see `exposure_segments`) and (a rerun's) kept
    per-unit rows (UNIT_COLUMNS) as one frame of INPUT_DDL, hash-partitioned by unit. No
    `segments` and no `exposures`: the kept rows give them (see `kept_inputs`), from one scan."""

    def shaped(frame: DataFrame, given: Mapping[str, Column]) -> DataFrame:
        columns = [given.get(name, F.lit(None)).cast(kind).alias(name) for name, kind in INPUT_TYPES.items()]
        return frame.select(*columns)

    def event_rows(frame: DataFrame, experiment: Column) -> DataFrame:
        given = {
            name: F.col(name) for name in ("unit_id", "name", "ts_us", "received_us", "copies", "last_received_us")
        }
        return shaped(frame, {**given, "tag": F.lit(EVENT_TAG), "experiment": experiment, **event_values()})

    rows = event_rows(distinct, F.lit(None))
    if conflicting is not None:
        rows = rows.unionByName(event_rows(conflicting, F.col("experiment")))
    if segments is not None:
        segment_rows = {"tag": F.lit(SEGMENT_TAG), **{name: F.col(name) for name in SEGMENT_COLUMNS}}
        rows = rows.unionByName(shaped(segments, segment_rows))
    if exposures is not None:
        exposure_rows = {"tag": F.lit(EXPOSURE_TAG), **{name: F.col(name) for name in EXPOSURE_COLUMNS}}
        rows = rows.unionByName(shaped(exposures, exposure_rows))
    if kept is not None:
        kept_rows = {"tag": F.lit(KEPT_TAG), **{name: F.col(name) for name in UNIT_COLUMNS}}
        # Without segments or exposures, each kept row twice: as its segment (without the packed
        # rows), and as itself.
        if segments is None and exposures is None:
            tag = F.explode(F.array(F.lit(SEGMENT_TAG), F.lit(KEPT_TAG))).alias("tag")
            kept = kept.select(*UNIT_COLUMNS, tag)
            kept_rows = {**kept_rows, "tag": F.col("tag"),
                         "rows": F.when(F.col("tag") == KEPT_TAG, F.col("rows"))}  # fmt: skip
        rows = rows.unionByName(shaped(kept, kept_rows))
    return rows.repartition(partitions, "unit_id")


def event_inputs(events: pa.Table) -> pa.Table:
    """De-duplicated events with `event_values` (an Arrow table) -> their INPUT rows."""
    return _inputs(events, EVENT_TAG, EVENT_INPUTS)


EVENT_INPUTS = ("unit_id", "name", "ts_us", "received_us", "amount", "valued", "copies", "last_received_us")


def kept_inputs(kept: pa.Table) -> pa.Table:
    """Kept per-unit rows (UNIT_COLUMNS) -> INPUT rows giving their units' segments and kept
    rows: each row as a SEGMENT and as a KEPT row. (A unit whose exposures did not change since
    the kept run, under the same timeline, has the segments it had.)"""
    return pa.concat_tables([_inputs(kept, SEGMENT_TAG, SEGMENT_COLUMNS), _inputs(kept, KEPT_TAG, UNIT_COLUMNS)])


def _inputs(table: pa.Table, tag: int, names: Sequence[str]) -> pa.Table:
    """An Arrow table's `names` columns as INPUT rows of `tag` (nulls in the other columns)."""
    schema = pa_schema(INPUT_DDL)
    columns = [table[field.name] if field.name in names else pa.nulls(table.num_rows, field.type) for field in schema]
    columns[0] = pa.array(np.full(table.num_rows, tag, np.int32))
    return pa.Table.from_arrays(columns, names=schema.names).cast(schema)


def output_rows(rows: DataFrame, plan: UnitPlan, rerun: bool = False) -> DataFrame:
    """`input_rows` -> every partition's rows of OUTPUT_DDL (`partition_rows`; with `rerun`,
    `rerun_rows`)."""
    function = rerun_rows if rerun else partition_rows

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from function(plan, batches)

    return rows.mapInArrow(run, OUTPUT_DDL)


def totals_frame(output: DataFrame) -> DataFrame:
    """The DELTAS, QUALITY and OVERFLOW rows summed over the partitions: per (experiment,
    metric, variant, c) the change of every SUMS statistic, in halves as
    `transforms.contribution_deltas(..., micros=True)` gives them; per experiment the
    QUALITY_COUNTS, and over its scoped events (exposed units or not) `scoped` (how many),
    `in_experiment` and `watermark_us` (`quality.scoped_summary`); an OVERFLOW row when some
    partition's sums could leave 64 bits; a rerun's HARD rows (`unit_id`) as they are; per
    (experiment, variant, c) the change in analysed `units` (UNIT_DELTAS) and per experiment its
    `units` and `multiple_variant_units` (UNIT_TOTALS)."""
    summed = [*(f"{name}_{half}" for name in tf.SUMS for half in ("hi", "lo")), *QUALITY_COUNTS, "scoped",
              "in_experiment", "units", "multiple_variant_units"]  # fmt: skip
    keys = ("part", "experiment", "metric", "variant", "c", "unit_id")
    wanted = F.col("part").isin(DELTAS, QUALITY, OVERFLOW, SCOPED, HARD, UNIT_DELTAS, UNIT_TOTALS)
    totals = [*(F.sum(name).alias(name) for name in summed), F.max("watermark_us").alias("watermark_us")]
    return output.where(wanted).groupBy(*keys).agg(*totals)


def quantile_values(output: DataFrame) -> DataFrame:
    """The QUANTILES rows of experiments with dimensions: (experiment, metric, variant,
    unit_id, v, count) as `latest.quantile_values` counts them, each distinct value of a unit
    once."""
    value = (F.col("v").cast("decimal(20,0)") / F.lit(tf.MICROS)).cast(tf.EVENT_VALUE)
    return output.where((F.col("part") == QUANTILES) & F.col("rows").isNull()).select(
        "experiment", "metric", "variant", "unit_id", value.alias("v"), "count"
    )


def quantile_packs(output: DataFrame) -> DataFrame:
    """The packed QUANTILES rows of the other experiments: (experiment, metric, variant,
    values), `values` a partition's VALUE_RECORDs of the group (`latest.quantile_blocks`)."""
    return output.where((F.col("part") == QUANTILES) & F.col("rows").isNotNull()).select(
        "experiment", "metric", "variant", F.col("rows").alias("values")
    )


def unit_rows(output: DataFrame) -> DataFrame:
    """The UNITS rows: each unit's merged increments as the per-unit state keeps them
    (`unitstate.UNIT_COLUMNS`)."""
    return output.where(F.col("part") == UNITS).select(*UNIT_COLUMNS)


class Overflow(Exception):
    """Some value of the partition could leave 64 bits."""


def pa_schema(ddl: str) -> pa.Schema:
    return pa.schema([(name, tf.ARROW_TYPES[kind]) for name, kind in (field.split(" ") for field in ddl.split(", "))])


OUTPUT_SCHEMA = pa_schema(OUTPUT_DDL)


def partition_rows(plan: UnitPlan, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """One partition's input rows -> its SCOPED, UNIT_DELTAS, UNIT_TOTALS, QUALITY, QUANTILES,
    DELTAS and (with a horizon) UNITS rows; OVERFLOW instead of the last two when a sum could
    leave 64 bits."""
    parts = [batch for batch in batches if batch.num_rows]
    if not parts:
        return
    units = _Units(plan, pa.Table.from_batches(parts).cast(pa_schema(INPUT_DDL)))
    yield units.scoped()
    yield from units.unit_counts()
    pairs = units.pairs()
    yield units.quality(pairs)
    classified = units.classified(pairs)
    yield from units.quantiles(classified)
    try:
        yield from units.deltas(classified)
    except Overflow:
        yield _batch(OVERFLOW, 1)


def rerun_rows(plan: UnitPlan, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """One partition of an additive rerun (new events, their units' segments and kept rows) ->
    a HARD row for each unit it cannot update (a row entering before the horizon), then over
    the others the SCOPED and QUALITY counts of the new events, the DELTAS against the kept
    totals and the UNITS rows now; OVERFLOW instead of the last two when a sum could leave
    64 bits."""
    parts = [batch for batch in batches if batch.num_rows]
    if not parts:
        return
    table = pa.Table.from_batches(parts).cast(pa_schema(INPUT_DDL))
    units = _Units(plan, table)
    hard = units.early(units.pairs())
    if hard.size:
        names = pc.take(units.unit_ids, pa.array(hard))
        yield _batch(HARD, hard.size, unit_id=names)
        units = _Units(plan, table.filter(pc.invert(pc.is_in(table["unit_id"], value_set=names))))
    yield units.scoped()
    pairs = units.pairs()
    yield units.quality(pairs)
    try:
        yield from units.updated(units.classified(pairs))
    except Overflow:
        yield _batch(OVERFLOW, 1)


def _batch(part: int, size: int, **columns: pa.Array) -> pa.RecordBatch:
    """A batch of OUTPUT_SCHEMA: these columns, nulls in the others."""
    arrays = [columns[field.name] if field.name in columns else pa.nulls(size, field.type) for field in OUTPUT_SCHEMA]
    arrays[0] = pa.array(np.full(size, part, np.int32))
    return pa.RecordBatch.from_arrays(arrays, schema=OUTPUT_SCHEMA)


def _numbers(column: pa.ChunkedArray | pa.Array, fill: int = 0) -> np.ndarray:
    return np.asarray(pc.fill_null(column, fill).to_numpy(zero_copy_only=False), np.int64)


def _flags(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(column, False).to_numpy(zero_copy_only=False), bool)


def _codes(column: pa.ChunkedArray, values: Sequence[str]) -> np.ndarray:
    """Index of each value in `values` (-1: null or absent)."""
    return _numbers(pc.index_in(column, value_set=pa.array(values, pa.string())), -1)


def _spans(counts: np.ndarray, firsts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows with `counts[i]` items starting at `firsts[i]`: (row of each item, item)."""
    owner = np.repeat(np.arange(counts.size), counts)
    return owner, np.repeat(firsts - (np.cumsum(counts) - counts), counts) + np.arange(owner.size)


def _product(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left x right in millionths, rounded half away from zero (`transforms.micro_product`)."""
    result = np.zeros(left.size, np.int64)
    both = np.flatnonzero((left != 0) & (right != 0))  # often few: no covariate, no denominator
    if both.size < left.size:
        left, right = left[both], right[both]
    small = (np.abs(left) <= tf.LONG_FACTOR) & (np.abs(right) <= tf.LONG_FACTOR)
    with np.errstate(over="ignore"):
        product = left * right
    half = tf.MICROS // 2
    rounded = np.where(product >= 0, (product + half) // tf.MICROS, -((half - product) // tf.MICROS))
    for index in np.flatnonzero(~small):  # rare: values beyond about 3,037
        exact = int(left[index]) * int(right[index])
        value = (exact + half) // tf.MICROS if exact >= 0 else -((half - exact) // tf.MICROS)
        if abs(value) >= SAFE:
            raise Overflow
        rounded[index] = value
    if both.size < result.size:
        result[both] = rounded
        return result
    return rounded


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    """Sorted rows -> whether each starts a new run of equal keys."""
    starts = np.zeros(keys[0].size, bool)
    if keys[0].size:
        starts[0] = True
        for key in keys:
            starts[1:] |= key[1:] != key[:-1]
    return starts


class _Key:
    """Rows keyed by several non-negative integer columns, most significant first: packed
    into one int64 when their ranges fit (one sort instead of a lexicographic one)."""

    def __init__(self, columns: tuple[np.ndarray, ...], packed: np.ndarray | None = None,
                 widths: tuple[int, ...] | None = None) -> None:  # fmt: skip
        self.columns = columns
        if widths is None:
            widths = tuple(int(column.max(initial=0)) + 1 for column in columns)
            if float(np.prod([float(width) for width in widths])) < 2.0**62:
                packed = np.zeros(columns[0].size, np.int64)
                for column, width in zip(columns, widths, strict=True):
                    packed = packed * width + column
            else:
                widths = ()
        self.packed, self.widths = packed, widths

    def order(self) -> np.ndarray:
        if self.packed is not None:
            return np.argsort(self.packed)
        return np.lexsort(self.columns[::-1])

    def take(self, rows: np.ndarray) -> _Key:
        if self.packed is not None:  # the packed key alone is sorted and compared from here on
            return _Key((), self.packed[rows], self.widths)
        return _Key(tuple(column[rows] for column in self.columns), None, self.widths)

    def starts(self, leading: int) -> np.ndarray:
        """Sorted rows -> whether each starts a new run of the first `leading` columns."""
        if self.packed is None:
            return _group_starts(*self.columns[:leading])
        divisor = int(np.prod(self.widths[leading:], dtype=np.int64)) if leading < len(self.widths) else 1
        return _group_starts(self.packed // divisor if divisor > 1 else self.packed)


def _halves(change: np.ndarray) -> tuple[tuple[str, np.ndarray], tuple[str, np.ndarray]]:
    """A change as its high (signed) and low (0 .. 2^32 - 1) 32 bits, the halves Spark sums."""
    return ("hi", change >> tf.LOW_BITS), ("lo", change & ((1 << tf.LOW_BITS) - 1))


def _group_sums(columns: tuple[np.ndarray, ...], changes: list[np.ndarray]
                ) -> tuple[tuple[np.ndarray, ...], dict[str, np.ndarray]]:  # fmt: skip
    """Rows keyed by non-negative integer columns -> each key once, in ascending order, with
    the sum of each of SUMS' `changes` over its rows, in halves (`<name>_hi`, `<name>_lo`).

    When the keys pack into few groups (at most COUNTED_GROUPS) and the rows are fewer than
    COUNTED_ROWS, each half is summed by `np.bincount` over the packed key, without a sort:
    its float64 sums are exact there (|hi| < 2^31 and lo < 2^32 per row, so every partial sum
    stays below 2^53). Otherwise the rows are sorted and summed per run of equal keys."""
    group = _Key(columns)
    halves: dict[str, np.ndarray] = {}
    size = int(np.prod(group.widths)) if group.packed is not None else 0
    if group.packed is not None and columns[0].size < COUNTED_ROWS and size <= COUNTED_GROUPS:
        present = np.flatnonzero(np.bincount(group.packed, minlength=size))
        for name, change in zip(tf.SUMS, changes, strict=True):
            for half, part in _halves(change):
                sums = np.bincount(group.packed, weights=part.astype(np.float64), minlength=size)
                halves[f"{name}_{half}"] = sums[present].astype(np.int64)
        keys = []
        for width in group.widths[:0:-1]:
            present, key = np.divmod(present, width)
            keys.append(key)
        return (present, *keys[::-1]), halves
    order = group.order()
    firsts = np.flatnonzero(group.take(order).starts(len(columns)))
    for name, change in zip(tf.SUMS, changes, strict=True):
        for half, part in _halves(change[order]):
            halves[f"{name}_{half}"] = np.add.reduceat(part, firsts) if firsts.size else part[:0]
    chosen = order[firsts]
    return tuple(column[chosen] for column in columns), halves


def _running(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative sums of `values` restarting at each `starts` row."""
    if not values.size:
        return values
    if float(np.abs(values).astype(np.float64).sum()) >= SAFE / 2:
        raise Overflow
    total = np.cumsum(values)
    first = np.flatnonzero(starts)
    base = np.repeat(total[first] - values[first], np.diff(np.append(first, values.size)))
    return total - base


@dataclass
class _Pairs:
    """(segment, event) rows of one unit inside the segment (`transforms.segment_event_rows`)."""

    seg: np.ndarray
    event: np.ndarray
    experiment: np.ndarray
    name: np.ndarray
    ts: np.ndarray
    entry: np.ndarray  # c
    by_time: np.ndarray  # k_time
    by_receipt: np.ndarray  # k_received

    def take(self, rows: np.ndarray) -> _Pairs:
        return _Pairs(*(getattr(self, name)[rows] for name in self.__dataclass_fields__))

    def where(self, keep: np.ndarray) -> _Pairs:
        """The rows where `keep` holds (these very arrays when it holds everywhere, as it mostly does)."""
        return self if keep.all() else self.take(np.flatnonzero(keep))


@dataclass
class _Classified:
    """(segment, event, metric role) rows (`transforms.classify_events`) with their amount."""

    seg: np.ndarray
    metric: np.ndarray
    entry: np.ndarray
    post: np.ndarray
    pre: np.ndarray
    is_num: np.ndarray
    value: np.ndarray  # the role's amount in millionths
    raw: np.ndarray  # the event's value in millionths
    valued: np.ndarray  # the event has a value


def _experiment_entry(plan: UnitPlan, experiment: np.ndarray, ts: np.ndarray,
                      received: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(k_time, k_received) of rows of these experiments (`transforms.with_entry_index`)."""
    day0 = plan.day0[experiment]
    by_time = np.clip((ts - day0) // DAY_US, 0, plan.latest[experiment])
    by_receipt = np.clip((received - day0 - plan.lateness[experiment]) // DAY_US, 0, plan.frozen[experiment])
    return by_time, by_receipt


def _accumulated(values: np.ndarray, position: np.ndarray, combine: np.ufunc) -> np.ndarray:
    """`combine` accumulated along runs: `position` is each row's place in its run (0: first)."""
    found = values.copy()
    for place in range(1, int(position.max(initial=0)) + 1):
        rows = np.flatnonzero(position == place)
        found[rows] = combine(found[rows - 1], found[rows])
    return found


def exposure_segments(plan: UnitPlan, exposures: pa.Table) -> pa.Table:
    """De-duplicated exposures (EXPOSURE_COLUMNS, at least one) of the plan's experiments -> their units'
    segments (SEGMENT_COLUMNS), as `transforms.unit_segments` gives them: per (experiment,
    unit), one segment per snapshot k at which some exposure enters, until the next one; the
    first exposure so far; the smallest variant so far (in byte order, as Spark compares
    strings), included while it is also the largest."""
    experiment = _codes(exposures["experiment"], plan.experiments)
    if (experiment < 0).any():
        raise ValueError("exposures of an experiment the pass does not compute")
    ts, received = _numbers(exposures["ts_us"]), _numbers(exposures["received_us"])
    entry = np.maximum(*_experiment_entry(plan, experiment, ts, received))
    units = pc.dictionary_encode(exposures["unit_id"]).combine_chunks()
    variants = pc.dictionary_encode(exposures["variant"]).combine_chunks()
    by_bytes = pc.sort_indices(variants.dictionary).to_numpy()
    rank = np.empty(by_bytes.size, np.int64)
    rank[by_bytes] = np.arange(by_bytes.size)
    unit, variant = _numbers(units.indices), rank[_numbers(variants.indices)]
    order = _Key((experiment, unit, entry)).order()
    experiment, unit, entry, ts, variant = (column[order] for column in (experiment, unit, entry, ts, variant))
    firsts = np.flatnonzero(_group_starts(experiment, unit, entry))
    earliest, smallest = np.minimum.reduceat(ts, firsts), np.minimum.reduceat(variant, firsts)
    largest = np.maximum.reduceat(variant, firsts)
    experiment, unit, entry = experiment[firsts], unit[firsts], entry[firsts]
    first = _group_starts(experiment, unit)
    run = np.flatnonzero(first)
    position = np.arange(first.size) - run[np.cumsum(first) - 1]
    smallest = _accumulated(smallest, position, np.minimum)
    end = np.full(entry.size, -1, np.int64)
    followed = np.flatnonzero(~first[1:])  # the next segment is the same unit's
    end[followed] = entry[followed + 1]
    return pa.table({
        "unit_id": units.dictionary.take(pa.array(unit)),
        "experiment": pa.array(np.array(plan.experiments, object)[experiment], pa.string()),
        "seg_start": pa.array(entry.astype(np.int32)),
        "seg_end": pa.array(end.astype(np.int32), mask=end < 0),
        "first_segment": pa.array(first),
        "first_us": pa.array(_accumulated(earliest, position, np.minimum)),
        "variant": variants.dictionary.take(pa.array(by_bytes[smallest])),
        "included": pa.array(smallest == _accumulated(largest, position, np.maximum)),
    })  # fmt: skip


class _Units:
    """One partition's events, segments and kept per-unit rows, decoded to arrays."""

    def __init__(self, plan: UnitPlan, table: pa.Table) -> None:
        self.plan = plan
        tags = _numbers(table["tag"])
        events, segments, kept, exposures = (table.filter(pa.array(tags == tag))
                                             for tag in (EVENT_TAG, SEGMENT_TAG, KEPT_TAG, EXPOSURE_TAG))  # fmt: skip
        if exposures.num_rows:
            segments = pa.concat_tables([segments.select(list(SEGMENT_COLUMNS)), exposure_segments(plan, exposures)])
        units = pc.dictionary_encode(pa.chunked_array(
            events["unit_id"].chunks + segments["unit_id"].chunks + kept["unit_id"].chunks, pa.string()
        )).combine_chunks()  # fmt: skip
        self.unit_ids = units.dictionary
        codes = _numbers(units.indices)
        self.ev_unit, self.sg_unit = codes[: events.num_rows], codes[events.num_rows : -kept.num_rows or None]
        self.ev_experiment = _codes(events["experiment"], plan.experiments)
        self.ev_name = _codes(events["name"], plan.names)
        self.ev_ts, self.ev_received = _numbers(events["ts_us"]), _numbers(events["received_us"])
        self.ev_amount, self.ev_copies = _numbers(events["amount"]), _numbers(events["copies"])
        self.ev_last_received = _numbers(events["last_received_us"])
        self.ev_valued = _flags(events["valued"])
        self.sg_experiment = _codes(segments["experiment"], plan.experiments)
        self.sg_start, self.sg_end = _numbers(segments["seg_start"]), _numbers(segments["seg_end"], -1)
        self.sg_first_us = _numbers(segments["first_us"])
        self.sg_later = ~_flags(segments["first_segment"])
        self.sg_included = _flags(segments["included"])
        variants = pc.dictionary_encode(pa.chunked_array(segments["variant"].chunks + kept["variant"].chunks,
                                                         pa.string())).combine_chunks()  # fmt: skip
        self.variant_names = variants.dictionary
        variant = _numbers(variants.indices)
        self.sg_variant = variant[: segments.num_rows]
        self.kept = _Merged.empty() if not kept.num_rows else self._kept(kept, codes[-kept.num_rows :],
                                                                          variant[segments.num_rows :])  # fmt: skip

    def _kept(self, kept: pa.Table, unit: np.ndarray, variant: np.ndarray) -> _Merged:
        """The kept per-unit rows (`unitstate.UNIT_DDL`, packed) as merged rows."""
        plan = self.plan
        owner, records = tf.unpacked_records(kept["rows"], ROW)
        experiment = _codes(kept["experiment"], plan.experiments)[owner]
        rank = records["metric"].astype(np.int64)
        known = (experiment >= 0) & (rank >= 0) & (rank < plan.ranked_metric.shape[1])
        metric = np.where(known, plan.ranked_metric[np.maximum(experiment, 0), np.where(known, rank, 0)], -1)
        if (metric < 0).any():
            raise ValueError("a kept per-unit row is of an experiment or metric the pass does not compute")
        return _merged(unit[owner], metric, _numbers(kept["seg_start"])[owner], records["c"].astype(np.int64),
                       records["num"], records["den"], records["pre"], variant[owner],
                       _flags(kept["included"])[owner])  # fmt: skip

    def early(self, pairs: _Pairs) -> np.ndarray:
        """The units with a (segment, event) row entering before its experiment's horizon:
        the additive rerun cannot update them (see `unitstate`)."""
        assert self.plan.horizon is not None
        return np.unique(self.sg_unit[pairs.seg[pairs.entry < self.plan.horizon[pairs.experiment]]])

    def pairs(self) -> _Pairs:
        """Every (segment, event) of one unit in the experiment's scope and the segment."""
        plan = self.plan
        read = np.flatnonzero(self.ev_name >= 0)  # events of names some experiment reads
        order = read[np.argsort(self.ev_unit[read], kind="stable")]
        per_unit = np.bincount(self.ev_unit[read], minlength=len(self.unit_ids))
        unit_first = np.cumsum(per_unit) - per_unit
        seg, position = _spans(per_unit[self.sg_unit], unit_first[self.sg_unit])
        event = order[position]
        experiment, name = self.sg_experiment[seg], self.ev_name[event]
        if (self.ev_experiment[read] >= 0).any():  # events de-duplicated for one experiment only
            owner = self.ev_experiment[event]
            keep = np.flatnonzero((owner < 0) | (owner == experiment))
            seg, event, experiment, name = seg[keep], event[keep], experiment[keep], name[keep]
        ts = self.ev_ts[event]
        keep = ts >= plan.since[experiment, name]
        seg, event, experiment, name, ts = seg[keep], event[keep], experiment[keep], name[keep], ts[keep]
        # The snapshot each enters (`transforms.with_entry_index`), inside its segment (`in_segment`).
        by_time, by_receipt = _experiment_entry(plan, experiment, ts, self.ev_received[event])
        entry = np.maximum(np.maximum(by_time, by_receipt), self.sg_start[seg])
        end = self.sg_end[seg]
        found = _Pairs(seg, event, experiment, name, ts, entry, by_time, by_receipt)
        return found.where((end < 0) | (entry < end))

    def scoped(self) -> pa.RecordBatch:
        """Per experiment, over the events in its scope (its names, from its since; exposed
        units or not): how many, how many from its start, and the latest receipt."""
        plan = self.plan
        rows = np.flatnonzero(self.ev_name >= 0)
        name, ts, owner = self.ev_name[rows], self.ev_ts[rows], self.ev_experiment[rows]
        received = self.ev_last_received[rows]
        found: dict[str, list[int | None]] = {"scoped": [], "in_experiment": [], "watermark_us": []}
        present = []
        for i in range(len(plan.experiments)):
            held = (ts >= plan.since[i, name]) & ((owner < 0) | (owner == i))
            if held.any():
                present.append(i)
                found["scoped"].append(int(held.sum()))
                found["in_experiment"].append(int((held & (ts >= plan.start[i])).sum()))
                found["watermark_us"].append(int(received[held].max()))
        names = pa.array([plan.experiments[i] for i in present], pa.string())
        columns = {key: pa.array(values, pa.int64()) for key, values in found.items()}
        return _batch(SCOPED, len(present), experiment=names, **columns)

    def unit_counts(self) -> Iterator[pa.RecordBatch]:
        """Over this partition's segments: per (experiment, variant, c) the change in analysed
        units (`transforms.unit_count_deltas`: +1 where an included segment starts, -1 where it
        ends), then per experiment its units' latest segments, included or not
        (`quality.unit_summary`)."""
        plan = self.plan
        included = np.flatnonzero(self.sg_included)
        ended = included[self.sg_end[included] >= 0]
        experiment = np.concatenate([self.sg_experiment[included], self.sg_experiment[ended]])
        variant = np.concatenate([self.sg_variant[included], self.sg_variant[ended]])
        entry = np.concatenate([self.sg_start[included], self.sg_end[ended]])
        change = np.concatenate([np.ones(included.size, np.int64), np.full(ended.size, -1, np.int64)])
        if change.size:
            order = _Key((experiment, variant, entry)).order()
            experiment, variant, entry, change = experiment[order], variant[order], entry[order], change[order]
            firsts = np.flatnonzero(_group_starts(experiment, variant, entry))
            names = np.array(plan.experiments, object)
            yield _batch(
                UNIT_DELTAS, firsts.size, experiment=pa.array(names[experiment[firsts]], pa.string()),
                variant=pc.take(self.variant_names, pa.array(variant[firsts])),
                c=pa.array(entry[firsts].astype(np.int32)), units=pa.array(np.add.reduceat(change, firsts)),
            )  # fmt: skip
        latest = self.sg_end < 0
        size = len(plan.experiments)
        experiment = self.sg_experiment[latest]
        present = np.flatnonzero(np.bincount(experiment, minlength=size))
        analysed = self.sg_included[latest]
        yield _batch(
            UNIT_TOTALS, present.size, experiment=pa.array(np.array(plan.experiments, object)[present], pa.string()),
            units=pa.array(_per_experiment(experiment, analysed, size)[present]),
            multiple_variant_units=pa.array(_per_experiment(experiment, ~analysed, size)[present]),
        )  # fmt: skip

    def quality(self, pairs: _Pairs) -> pa.RecordBatch:
        """Per experiment, `quality.latest_event_summary`'s counts over this partition's units."""
        plan = self.plan
        latest = pairs.where(self.sg_end[pairs.seg] < 0)
        experiment, name, ts, seg = latest.experiment, latest.name, latest.ts, latest.seg
        first = self.sg_first_us[seg]
        in_experiment = ts >= plan.start[experiment]
        window = plan.use_window[experiment, name]
        in_window = plan.use_unbounded[experiment, name] | ((window >= 0) & (ts < first + window))
        used = self.sg_included[seg] & (ts >= first) & in_window
        late = (self.ev_received[latest.event] - ts) > plan.late_threshold_us
        after_freeze = (latest.by_time < plan.frozen[experiment]) & (latest.by_receipt > latest.by_time)
        counts = {
            "exposed_in_experiment": in_experiment, "events_before_exposure": in_experiment & (ts < first),
            "duplicates": self.ev_copies[latest.event] - 1, "late_events_included": used & late,
            "late_after_freeze": used & after_freeze,
        }  # fmt: skip
        size = len(plan.experiments)
        present = np.flatnonzero(np.bincount(experiment, minlength=size))
        columns = {name: pa.array(_per_experiment(experiment, np.asarray(weights, np.int64), size)[present])
                   for name, weights in counts.items()}  # fmt: skip
        names = pa.array(np.array(plan.experiments, object)[present], pa.string())
        return _batch(QUALITY, present.size, experiment=names, **columns)

    def classified(self, pairs: _Pairs) -> _Classified:
        """Each metric role a pair's event feeds, inside its window or pre-period."""
        plan = self.plan
        where = pairs.experiment * len(plan.names) + pairs.name  # [experiment, name], flat
        since = pairs.ts - self.sg_first_us[pairs.seg]  # from the unit's first exposure
        # An event before the unit's first exposure counts only in a pre-period: it feeds only
        # the roles that have one (each (experiment, name)'s first `early_count`).
        counts = np.where(since >= 0, plan.roles_count.ravel()[where], plan.early_count.ravel()[where])
        pair, role = _spans(counts, plan.roles_from.ravel()[where])
        since, window, lookback = since[pair], plan.role_window[role], plan.role_lookback[role]
        post = (since >= 0) & ((window < 0) | (since < window))
        keep = np.flatnonzero(post | ((since >= -lookback) & (since < 0) & plan.role_num[role]))
        pair, role, post = pair[keep], role[keep], post[keep]  # the others are in a pre-period
        event = pairs.event[pair]
        raw, is_num = self.ev_amount[event], plan.role_num[role]
        value = np.where(plan.role_value[role], raw, tf.MICROS)
        return _Classified(pairs.seg[pair], plan.role_metric[role], pairs.entry[pair], post, ~post, is_num, value, raw,
                           self.ev_valued[event])  # fmt: skip

    def quantiles(self, rows: _Classified) -> Iterator[pa.RecordBatch]:
        """The counted values of quantile metrics for analysed units at the latest snapshot,
        one per (unit, metric, value) with how many times it counts. An experiment with
        dimensions gets them as rows (its slices join them by unit); the others get one row
        per (metric, variant) with its values packed in `rows` (VALUE_RECORDs, `unit` the
        unit's index in this partition): a few rows per partition instead of one per value."""
        plan, seg = self.plan, rows.seg
        counted = (rows.post & rows.is_num & rows.valued & (plan.metric_kind[rows.metric] == KIND_QUANTILE)
                   & (self.sg_end[seg] < 0) & self.sg_included[seg])  # fmt: skip
        chosen = np.flatnonzero(counted)
        seg, metric, value = seg[chosen], rows.metric[chosen], rows.raw[chosen]
        unit, variant = self.sg_unit[seg], self.sg_variant[seg]
        order = np.lexsort((value, unit, variant, metric))
        metric, variant, unit, value = metric[order], variant[order], unit[order], value[order]
        firsts = np.flatnonzero(_group_starts(metric, variant, unit, value))
        counts = np.diff(np.append(firsts, value.size))
        metric, variant, unit, value = metric[firsts], variant[firsts], unit[firsts], value[firsts]
        sliced = plan.sliced[plan.metric_experiment[metric]]
        loose = np.flatnonzero(sliced)
        if loose.size:
            yield _batch(
                QUANTILES, loose.size, **self._group_columns(metric[loose], variant[loose]),
                unit_id=pc.take(self.unit_ids, pa.array(unit[loose])), v=pa.array(value[loose]),
                count=pa.array(counts[loose].astype(np.int64)),
            )  # fmt: skip
        packed = np.flatnonzero(~sliced)
        if packed.size:
            records = np.zeros(packed.size, VALUE_RECORD)
            records["unit"], records["v"], records["count"] = unit[packed], value[packed], counts[packed]
            groups = np.flatnonzero(_group_starts(metric[packed], variant[packed]))
            yield _batch(QUANTILES, groups.size, **self._group_columns(metric[packed][groups], variant[packed][groups]),
                         rows=tf.packed_records(records, groups))  # fmt: skip

    def _group_columns(self, metric: np.ndarray, variant: np.ndarray) -> dict[str, pa.Array]:
        plan = self.plan
        return {
            "experiment": pa.array(np.array(plan.experiments, object)[plan.metric_experiment[metric]], pa.string()),
            "metric": pa.array(np.array(plan.metric_names, object)[metric], pa.string()),
            "variant": pc.take(self.variant_names, pa.array(variant)),
        }

    def increments(self, rows: _Classified, starts: bool = True) -> _Merged:
        """The classified rows' increments merged per (unit, metric, segment, entry), with (when
        `starts`) a zero row where each later segment starts, for every metric of its
        experiment (`transforms.metric_increments`, `merged_increments`; without: the event
        rows only, `transforms.event_increments`)."""
        plan = self.plan
        later = np.flatnonzero(self.sg_later) if starts else np.zeros(0, np.int64)
        later_experiment = self.sg_experiment[later]
        owner, metric_of_start = _spans(plan.metrics_from[later_experiment + 1] - plan.metrics_from[later_experiment],
                                        plan.metrics_from[later_experiment])  # fmt: skip
        seg = np.concatenate([rows.seg, later[owner]])
        zeros = np.zeros(owner.size, np.int64)
        if float(np.abs(rows.value).astype(np.float64).sum()) >= SAFE / 2:
            raise Overflow  # some sum of a unit's amounts could leave 64 bits
        return _merged(
            self.sg_unit[seg], np.concatenate([rows.metric, metric_of_start]), self.sg_start[seg],
            np.concatenate([rows.entry, self.sg_start[later[owner]]]),
            np.concatenate([np.where(rows.post & rows.is_num, rows.value, 0), zeros]),
            np.concatenate([np.where(rows.post & ~rows.is_num, rows.value, 0), zeros]),
            np.concatenate([np.where(rows.pre, rows.value, 0), zeros]), self.sg_variant[seg], self.sg_included[seg],
        )  # fmt: skip

    def deltas(self, rows: _Classified) -> Iterator[pa.RecordBatch]:
        """Per (experiment, metric, variant, c) the change of every SUMS statistic (see
        `transforms.metric_increments` .. `contribution_deltas`), in halves; with a horizon,
        then the units' rows for the per-unit state."""
        merged = self.increments(rows)
        yield self.summed(*_changes(self.plan, merged))
        if self.plan.horizon is not None:
            yield from self.kept_rows(merged)

    def updated(self, rows: _Classified) -> Iterator[pa.RecordBatch]:
        """The additive rerun (`rerun._additive`): the kept rows of these units and the new
        events' increments -> what the totals gain (the changed (unit, metric)s' contributions
        now) and lose (the same as the kept rows give them), summed as `deltas` sums; then
        the units' rows now, for the next per-unit state."""
        plan = self.plan
        added, kept = self.increments(rows, starts=False), self.kept
        if (
            float(
                np.abs(np.concatenate([kept.num, kept.den, kept.pre])).astype(np.float64).sum()
                + np.abs(np.concatenate([added.num, added.den, added.pre])).astype(np.float64).sum()
            )
            >= SAFE / 2
        ):
            raise Overflow  # merged, some sum could leave 64 bits
        now = _merged(*(np.concatenate([getattr(kept, name), getattr(added, name)]) for name in _Merged.COLUMNS))
        width = len(plan.metric_names)
        changed = np.unique(added.unit * width + added.metric)
        now_changed = now.take(np.flatnonzero(np.isin(now.unit * width + now.metric, changed)))
        kept_changed = kept.take(np.flatnonzero(np.isin(kept.unit * width + kept.metric, changed)))
        (metric, variant, entry, gains), (was_metric, was_variant, was_entry, losses) = (
            _changes(plan, now_changed), _changes(plan, kept_changed))  # fmt: skip
        changes = [np.concatenate([gain, -loss]) for gain, loss in zip(gains, losses, strict=True)]
        yield self.summed(np.concatenate([metric, was_metric]), np.concatenate([variant, was_variant]),
                          np.concatenate([entry, was_entry]), changes)  # fmt: skip
        yield from self.kept_rows(now)

    def summed(self, metric: np.ndarray, variant: np.ndarray, entry: np.ndarray,
               changes: list[np.ndarray]) -> pa.RecordBatch:  # fmt: skip
        """Changes summed per (experiment, metric, variant, c), in halves (a DELTAS batch)."""
        (metric, variant, entry), halves = _group_sums((metric, variant, entry), changes)
        columns = {name: pa.array(sums) for name, sums in halves.items()}
        return _batch(DELTAS, metric.size, **self._group_columns(metric, variant), c=pa.array(entry.astype(np.int32)),
                      **columns)  # fmt: skip

    def kept_rows(self, merged: _Merged) -> Iterator[pa.RecordBatch]:
        """Merged increments in (unit, metric, segment, entry) order -> the rows the per-unit
        state keeps (UNITS): one per segment of the partition, with the segment as the pass
        found it and, packed in (metric rank, c) order, its merged increments, those before
        the experiment's horizon summed into one at horizon - 1 (none: an empty value)."""
        plan = self.plan
        assert plan.horizon is not None
        experiment = plan.metric_experiment[merged.metric]
        edge = plan.horizon[experiment] - 1
        entry = np.where(merged.entry <= edge, edge, merged.entry)  # keeps the order
        firsts = np.flatnonzero(_group_starts(merged.unit, merged.metric, merged.seg_start, entry))
        sums = [np.add.reduceat(getattr(merged, name), firsts) if firsts.size else merged.num[:0]
                for name in ("num", "den", "pre")]  # fmt: skip
        chosen, entry, experiment = merged.take(firsts), entry[firsts], experiment[firsts]
        rank = plan.metric_rank[chosen.metric]
        key = _Key((chosen.unit, experiment, chosen.seg_start, rank, entry))
        order = key.order()
        records = np.zeros(order.size, ROW)
        for name, column in (("metric", rank), ("c", entry), ("num", sums[0]), ("den", sums[1]), ("pre", sums[2])):
            records[name] = column[order]
        # The records are in the segments' order: both are sorted by (unit, experiment, seg_start).
        seg_order, owner = self._segments_of(chosen.unit[order], experiment[order], chosen.seg_start[order])
        counts = np.bincount(owner, minlength=seg_order.size)
        starts = np.cumsum(counts) - counts
        names = np.array(plan.experiments, object)
        for begin in range(0, seg_order.size, UNITS_PER_BATCH):
            rows = seg_order[begin : begin + UNITS_PER_BATCH]
            first = starts[begin] if rows.size else 0
            last = first + int(counts[begin : begin + UNITS_PER_BATCH].sum())
            end = self.sg_end[rows]
            yield _batch(
                UNITS, rows.size, experiment=pa.array(names[self.sg_experiment[rows]], pa.string()),
                unit_id=pc.take(self.unit_ids, pa.array(self.sg_unit[rows])),
                seg_start=pa.array(self.sg_start[rows].astype(np.int32)),
                seg_end=pa.array(end.astype(np.int32), mask=end < 0), first_segment=pa.array(~self.sg_later[rows]),
                first_us=pa.array(self.sg_first_us[rows]), included=pa.array(self.sg_included[rows]),
                variant=pc.take(self.variant_names, pa.array(self.sg_variant[rows])),
                rows=tf.packed_records(records[first:last], starts[begin : begin + UNITS_PER_BATCH] - first),
            )  # fmt: skip

    def _segments_of(self, unit: np.ndarray, experiment: np.ndarray,
                     seg_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The partition's segments in (unit, experiment, seg_start) order, and each given
        (unit, experiment, seg_start)'s position in it; ValueError when one is not among them
        (kept rows of a segment the pass does not have)."""
        width = [max(int(a.max(initial=0)), int(b.max(initial=0))) + 1
                 for a, b in ((self.sg_experiment, experiment), (self.sg_start, seg_start))]  # fmt: skip
        known = (self.sg_unit * width[0] + self.sg_experiment) * width[1] + self.sg_start
        wanted = (unit * width[0] + experiment) * width[1] + seg_start
        seg_order = np.argsort(known, kind="stable")
        ordered = known[seg_order]
        found = np.searchsorted(ordered, wanted)
        if (found >= ordered.size).any() or (ordered[np.minimum(found, max(ordered.size - 1, 0))] != wanted).any():
            raise ValueError("per-unit rows of a segment the pass does not have")
        return seg_order, found


UNITS_PER_BATCH = 100_000  # packed rows per UNITS batch (a binary column holds at most 2 GiB)


@dataclass
class _Merged:
    """Rows of (unit, metric, segment, entry), one each, in that order (`_merged`), with their
    num, den and pre sums (millionths) and their segment's variant and inclusion."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("unit", "metric", "seg_start", "entry", "num", "den", "pre", "variant",
                                          "included")  # fmt: skip
    unit: np.ndarray
    metric: np.ndarray
    seg_start: np.ndarray
    entry: np.ndarray
    num: np.ndarray
    den: np.ndarray
    pre: np.ndarray
    variant: np.ndarray
    included: np.ndarray
    key: _Key

    def take(self, rows: np.ndarray) -> _Merged:
        columns: dict[str, Any] = {name: getattr(self, name)[rows] for name in self.COLUMNS}
        return _Merged(**columns, key=self.key.take(rows))

    @classmethod
    def empty(cls) -> _Merged:
        none = np.zeros(0, np.int64)
        return _merged(none, none, none, none, none, none, none, none, none.astype(bool))


def _merged(unit: np.ndarray, metric: np.ndarray, seg_start: np.ndarray, entry: np.ndarray, num: np.ndarray,
            den: np.ndarray, pre: np.ndarray, variant: np.ndarray, included: np.ndarray) -> _Merged:  # fmt: skip
    """Rows summed per (unit, metric, segment, entry), in that order (`merged_increments`)."""
    key = _Key((unit, metric, seg_start, entry))
    order = key.order()
    key = key.take(order)
    firsts = np.flatnonzero(key.starts(4))
    num, den, pre = (np.add.reduceat(column[order], firsts) if firsts.size else column[:0]
                     for column in (num, den, pre))  # fmt: skip
    chosen = order[firsts]
    return _Merged(unit[chosen], metric[chosen], seg_start[chosen], entry[chosen], num, den, pre, variant[chosen],
                   included[chosen], key.take(firsts))  # fmt: skip


def _changes(plan: UnitPlan, merged: _Merged) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Merged rows -> (metric, variant, entry, the change of each SUMS statistic) per row: its
    unit's running values within the segment (`unit_metric_values`) against the unit's
    previous row for the metric, and where the variant moved, the previous value taken away
    from the previous variant (`contribution_deltas`)."""
    key, metric = merged.key, merged.metric
    in_segment = key.starts(3)
    num, den, before = (_running(column, in_segment) for column in (merged.num, merged.den, merged.pre))
    kind, included = plan.metric_kind[metric], merged.included
    # A unit seen in more than one variant adds nothing: its values are 0, and so their products.
    y = np.where(included, np.where(kind == KIND_PROPORTION, np.where(num > 0, tf.MICROS, 0), num), 0)
    x = np.where(included, np.where(kind == KIND_PROPORTION, np.where(before > 0, tf.MICROS, 0), before), 0)
    d = np.where(included & (kind == KIND_RATIO), den, 0)
    terms = {"sum": y, "sum_squares": _product(y, y), "cov_sum": x, "cov_sum_squares": _product(x, x),
             "cov_sum_products": _product(y, x), "den_sum": d, "den_sum_squares": _product(d, d),
             "den_sum_products": _product(y, d), "cov_den_products": _product(d, x)}  # fmt: skip
    gated = [terms[name] for name in tf.SUMS]
    if any(np.abs(column).max(initial=0) >= SAFE for column in gated):
        raise Overflow

    variant, entry = merged.variant, merged.entry
    later = ~key.starts(2)  # not the (unit, metric)'s first row
    kept = np.zeros(variant.size, bool)
    kept[1:] = variant[1:] == variant[:-1]
    same = later & kept  # the previous row is the same unit's, metric's and variant's
    moved = np.flatnonzero(later & ~kept)
    changes = []
    for column in gated:
        previous = np.zeros_like(column)
        previous[1:] = column[:-1]
        changes.append(np.concatenate([column - np.where(same, previous, 0), -column[moved - 1]]))
    return (np.concatenate([metric, metric[moved]]), np.concatenate([variant, variant[moved - 1]]),
            np.concatenate([entry, entry[moved]]), changes)  # fmt: skip


def _per_experiment(experiment: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Sums of small non-negative integer `weights` per experiment (exact below 2^53)."""
    return np.rint(np.bincount(experiment, weights=weights.astype(np.float64), minlength=size)).astype(np.int64)
