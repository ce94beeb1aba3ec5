"""One pass's statistics from its exposures and events: per experiment, the per-snapshot
changes of every sufficient statistic and unit count, the latest data-quality counts, and
the latest slices and quantile blocks (`compute_statistics`).

The events are joined once by unit to the exposure segments of every experiment and
aggregated once; what differs between experiments is data in the plan (small broadcast
frames keyed by `experiment`, see `transforms`). In ANSI mode the per-unit arithmetic (the
deltas, the quality counts of exposed units, the quantile values, the per-unit state) runs in
numpy over one partition of units at a time (`unitmath`, `unit_arrays`), so the experiments x
events rows never become Spark rows; otherwise, or when a partition's sums could leave 64
bits, as Spark frames in 64-bit millionths or decimals (`contribution_rows`): the same digits."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.errors import ArithmeticException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from services.metrics.job import latest as lt
from services.metrics.job import quality
from services.metrics.job import transforms as tf
from services.metrics.job import unitmath as um
from services.metrics.job import unitstate as us
from services.metrics.job.document import LatestRows
from services.metrics.job.incremental import Totals
from services.metrics.job.plan import ExperimentPlan
from services.metrics.job.run import JobOptions
from services.metrics.job.sources import (
    EventSource,
    shuffle_partitions,
)

log = logging.getLogger("services.metrics.job")


NO_EVENTS = {"events_without_exposure": 0, "events_before_exposure": 0, "duplicates": 0, "watermark_us": None}


NO_USED_EVENTS = {"late_events_included": 0, "late_after_freeze": 0}


def collected(frame: DataFrame) -> list[dict[str, Any]]:
    return [row.asDict() for row in frame.collect()]


def by_experiment(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row.pop("experiment")].append(row)
    return grouped


def quality_counts(units: DataFrame, latest: DataFrame, scoped: DataFrame) -> dict[str, dict[str, Any]]:
    """Per experiment: the latest snapshot's data-quality counts, in one collect. `units`:
    `quality.unit_summary`'s columns, `latest`: the counts over exposed units' events
    (`quality.latest_event_summary`'s columns), `scoped`: over all its events
    (`quality.scoped_summary`'s)."""
    seen = quality.event_summary(scoped, latest)
    nested = F.struct(*[F.col(name) for name in NO_EVENTS]).alias("events")
    joined = units.join(seen.select("experiment", *NO_USED_EVENTS, nested), "experiment", "left")
    counts: dict[str, dict[str, Any]] = {}
    for row in collected(joined):
        key, events_row = str(row.pop("experiment")), row.pop("events")
        entry: dict[str, Any] = {name: NO_USED_EVENTS.get(name) if value is None else value
                                 for name, value in row.items()}  # fmt: skip
        entry["events"] = events_row.asDict() if events_row is not None else dict(NO_EVENTS)
        counts[key] = entry
    return counts


def with_arrays(options: JobOptions, spark: SparkSession) -> bool:
    """Whether the pass's per-unit arithmetic runs in the arrays (`unitmath`): asked for, and
    in ANSI mode (their 64-bit checks stand in for Spark's)."""
    return options.unit_arrays and ansi_mode(spark)


def ansi_mode(spark: SparkSession) -> bool:
    """Whether integer overflow raises in this session (Spark 4's default). Asked without a
    default of our own: `conf.get(key, default)` answers that default for a key never set."""
    return str(spark.conf.get("spark.sql.ansi.enabled")).lower() == "true"


def micro_deltas(merged: DataFrame) -> list[dict[str, Any]]:
    """`tf.contribution_deltas` of merged increments in millionths, collected as decimals."""
    values = tf.unit_metric_values(merged, micros=True, merged=True)
    return [tf.from_micros(row) for row in collected(tf.contribution_deltas(values, micros=True))]


def contribution_rows(classified: DataFrame, segments: DataFrame, kinds: DataFrame,
                      micros: bool | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """`tf.contribution_deltas` over the classified events, collected. In 64-bit millionths
    when the session runs in ANSI mode (an overflow then raises instead of wrapping), and in
    decimals otherwise or after such an overflow (values or sums beyond what longs hold):
    the same rows either way. `micros` forces one way (True still falls back)."""
    spark = classified.sparkSession
    if micros is None:
        micros = ansi_mode(spark)
    if micros:
        merged = tf.merged_increments(tf.metric_increments(classified, segments, kinds, micros=True))
        try:
            return micro_deltas(merged)
        except ArithmeticException as exc:
            log.info("64-bit sums would overflow; computing in decimals", extra={"error": str(exc)[:300]})
    increments = tf.metric_increments(classified, segments, kinds)
    return collected(tf.contribution_deltas(tf.unit_metric_values(increments)))


def materialized(frame: DataFrame) -> DataFrame:
    """`frame`, persisted and computed now. Spark knows a cached frame's partitioning (here: by
    unit) only once it is computed; planned before, every later query would shuffle it again."""
    frame = frame.persist()
    frame.count()
    return frame


class Segments:
    """The units' segments of a pass as a Spark frame (`tf.unit_segments`), computed and
    persisted when first asked for: a pass whose per-unit arrays compute them itself (see
    `unitmath.exposure_segments`) needs the frame only for slices, or to sum in Spark after
    an overflow."""

    def __init__(self, exposures: DataFrame, timelines: DataFrame) -> None:
        self.exposures, self.timelines = exposures, timelines
        self._frame: DataFrame | None = None

    @property
    def frame(self) -> DataFrame:
        """Hash-partitioned by unit, as the events are: they join where they are."""
        if self._frame is None:
            by_unit = self.exposures.repartition(shuffle_partitions(self.exposures.sparkSession), "unit_id")
            self._frame = materialized(tf.unit_segments(tf.with_entry_index(by_unit, self.timelines)))
        return self._frame

    def release(self) -> None:
        if self._frame is not None:
            self._frame.unpersist()


def compute_statistics(
    exposures: DataFrame,
    events: EventSource,
    plans: Mapping[str, ExperimentPlan],
    options: JobOptions,
    tables: us.UnitTables | None = None,
) -> dict[str, tuple[Totals, LatestRows]]:
    """De-duplicated exposures (with `experiment`) and the pass's events -> per experiment:
    its additive totals (per-snapshot changes of the statistics and units, the latest
    data-quality counts) and the latest slices and quantile blocks. With `tables`, the units'
    rows from each experiment's horizon on are written there (see `unitstate`)."""
    spark = exposures.sparkSession
    timelines = tf.timeline_frame(spark, {key: plan.timeline for key, plan in plans.items()})
    metrics = {key: plan.metrics for key, plan in plans.items()}
    starts = tf.local_frame(spark, [(key, plan.start_us) for key, plan in plans.items()],
                            "experiment string, start_us long")  # fmt: skip
    # The arrays read the exposures themselves: only their columns, read once.
    exposure_rows = materialized(exposures.select(*um.EXPOSURE_COLUMNS)) if with_arrays(options, spark) else None
    segments = Segments(exposure_rows if exposure_rows is not None else exposures, timelines)
    seg_events = arrays = classified = None
    try:
        # In ANSI mode the deltas, the unit counts, the quality counts, the quantile values and
        # the per-unit state come from the per-unit arrays (`unitmath`), segments included.
        # The (segment, event) rows are joined in Spark only for what else reads them (the
        # slices; the deltas after an overflow; everything without the arrays), and when
        # several steps read them they are persisted.
        if exposure_rows is not None:
            arrays = unit_arrays(events, exposure_rows, plans, options, tables)
        sliced = any(plan.dimensions for plan in plans.values())
        if arrays is None or arrays.deltas is None or sliced:
            seg_events = tf.segment_event_rows(tf.with_entry_index(events.exposed(segments.frame), timelines))
            if any(plan.dimensions or (arrays is None and plan.quantile_metrics) for plan in plans.values()):
                seg_events = materialized(seg_events)
            classified = tf.classify_events(seg_events, tf.metric_roles(spark, metrics))
        if arrays is not None and arrays.deltas is not None:
            rows = arrays.deltas
            if tables is not None:
                tables.add_units(um.unit_rows(arrays.output))
        else:
            assert classified is not None
            rows = contribution_rows(classified, segments.frame, tf.metric_kinds(spark, metrics))
            if tables is not None:
                tables.incomplete("the pass summed in Spark frames")
        deltas = by_experiment(rows)
        if arrays is not None:
            unit_deltas, units = by_experiment(arrays.unit_deltas), arrays.units
            latest_events, scoped = arrays.quality, arrays.scoped
        else:
            assert seg_events is not None
            unit_deltas = by_experiment(collected(tf.unit_count_deltas(segments.frame)))
            units = quality.unit_summary(segments.frame)
            latest_events = quality.latest_event_summary(seg_events, starts, tf.event_uses(tf.metric_roles(
                spark, metrics)), timelines, options.late_threshold_us)  # fmt: skip
            scoped = quality.scoped_summary(events.scoped(), starts)
        counts = quality_counts(units, latest_events, scoped)
        values, packs = (arrays.quantile_values, arrays.quantile_packs) if arrays is not None else (None, None)
        latest = latest_statistics(exposures, segments, classified, plans, values, packs)
    finally:
        if arrays is not None:
            arrays.release()
        if seg_events is not None:
            seg_events.unpersist()
        segments.release()
        if exposure_rows is not None:
            exposure_rows.unpersist()
    return {
        key: (Totals.collected(deltas.get(key, []), unit_deltas.get(key, []), counts.get(key)),
              latest.get(key, LatestRows()))
        for key in plans
    }  # fmt: skip


@dataclass
class UnitArrays:
    """What the per-unit arrays (`unitmath`) give a pass: the deltas (None when some sum could
    leave 64 bits: the caller computes them in Spark), per experiment the latest snapshot's
    quality counts of exposed units (`quality.latest_event_summary`'s columns) and those of
    all its events (`quality.scoped_summary`'s), the segments' unit counts (per snapshot, and
    per experiment at the latest), and the counted quantile values: of
    experiments with dimensions as rows (`latest.quantile_values`' columns), of the others
    packed per partition and group (`um.quantile_packs`); both None without quantile metrics."""

    deltas: list[dict[str, Any]] | None
    quality: DataFrame
    scoped: DataFrame  # `quality.scoped_summary`'s columns
    quantile_values: DataFrame | None
    quantile_packs: DataFrame | None
    unit_deltas: list[dict[str, Any]]  # `tf.unit_count_deltas`' rows
    units: DataFrame  # `quality.unit_summary`'s columns
    output: DataFrame  # persisted when the quantile values or the per-unit state read it after the collect

    def release(self) -> None:
        self.output.unpersist()


EXPOSURES_PER_PARTITION = 250_000


def array_partitions(exposures: DataFrame) -> int:
    """How many partitions of units the arrays run over: the session's shuffle partitions, times
    one more per EXPOSURES_PER_PARTITION de-duplicated exposures (persisted: counting them is
    cheap). A partition's arrays hold all (segment, event) pairs of its units, and there are
    about experiments x events of them: more partitions keep each worker's memory bounded."""
    return shuffle_partitions(exposures.sparkSession) * max(1, -(-exposures.count() // EXPOSURES_PER_PARTITION))


DELTA_COLUMNS = ("experiment", "metric", "variant", "c",
                 *(f"{name}_{half}" for name in tf.SUMS for half in ("hi", "lo")))  # fmt: skip


def unit_arrays(events: EventSource, exposures: DataFrame, plans: Mapping[str, ExperimentPlan],
                options: JobOptions, tables: us.UnitTables | None) -> UnitArrays:  # fmt: skip
    """The per-unit arrays of a pass over its events and de-duplicated exposures (persisted,
    `um.EXPOSURE_COLUMNS`), in one collect (see `UnitArrays`); with `tables`, they also give the
    units' rows for the per-unit state (`um.unit_rows` of the output)."""
    spark = exposures.sparkSession
    plan = um.UnitPlan.build(plans, options.late_threshold_us, keep_units=tables is not None)
    rows = um.input_rows(events.distinct, events.conflicting, None, array_partitions(exposures),
                         exposures=exposures)  # fmt: skip
    output = um.output_rows(rows, plan)
    quantiles = any(plan.quantile_metrics for plan in plans.values())
    if quantiles or tables is not None:
        output = output.persist()
    parts = array_parts(output)
    deltas = None
    if parts[um.OVERFLOW]:
        log.info("64-bit sums would overflow; computing the deltas in Spark")
    else:
        deltas = array_deltas(parts)
    counts = [(row["experiment"], *(row[name] for name in um.QUALITY_COUNTS)) for row in parts[um.QUALITY]]
    ddl = ", ".join(["experiment string", *(f"{name} long" for name in um.QUALITY_COUNTS)])
    scoped = [(row["experiment"], row["in_experiment"], row["watermark_us"]) for row in parts[um.SCOPED]
              if row["scoped"]]  # fmt: skip
    scoped_frame = tf.local_frame(spark, scoped, "experiment string, in_experiment long, watermark_us long")
    values, packs = (um.quantile_values(output), um.quantile_packs(output)) if quantiles else (None, None)
    unit_deltas = [{name: row[name] for name in ("experiment", "variant", "c", "units")}
                   for row in parts[um.UNIT_DELTAS]]  # fmt: skip
    units = tf.local_frame(spark, [(row["experiment"], row["units"], row["multiple_variant_units"])
                                   for row in parts[um.UNIT_TOTALS]],
                           "experiment string, units long, multiple_variant_units long")  # fmt: skip
    return UnitArrays(deltas, tf.local_frame(spark, counts, ddl), scoped_frame, values, packs, unit_deltas, units,
                      output)  # fmt: skip


def array_parts(output: DataFrame) -> dict[int, list[dict[str, Any]]]:
    """The arrays' output summed over the partitions (`um.totals_frame`), in one collect, by part."""
    parts: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in collected(um.totals_frame(output)):
        parts[row.pop("part")].append(row)
    return parts


def array_deltas(parts: Mapping[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The DELTAS rows as `micro_deltas` gives them."""
    return [tf.from_micros({name: row[name] for name in DELTA_COLUMNS}) for row in parts[um.DELTAS]]


def array_event_counts(parts: Mapping[int, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per experiment, the new events' counts in `_quality_counts`' shape (as
    `quality.event_summary` joins the SCOPED and QUALITY rows), with no unit counts: the units
    updated from their kept rows keep their exposures, so their unit counts stand."""
    exposed = {row["experiment"]: row for row in parts[um.QUALITY]}
    counts = {}
    for row in parts[um.SCOPED]:
        if not row["scoped"]:
            continue
        latest = exposed.get(row["experiment"], {})
        events = {"events_without_exposure": row["in_experiment"] - (latest.get("exposed_in_experiment") or 0),
                  **{name: latest.get(name) or 0 for name in ("events_before_exposure", "duplicates")},
                  "watermark_us": row["watermark_us"]}  # fmt: skip
        counts[row["experiment"]] = {"units": 0, "multiple_variant_units": 0, "events": events,
                                     **{name: latest.get(name) or 0 for name in NO_USED_EVENTS}}  # fmt: skip
    return counts


def latest_statistics(exposures: DataFrame, segments: Segments, classified: DataFrame | None,
                      plans: Mapping[str, ExperimentPlan], values: DataFrame | None = None,
                      packs: DataFrame | None = None) -> dict[str, LatestRows]:  # fmt: skip
    """Slices and quantile blocks of the latest snapshot (see `latest`), for the experiments
    with dimensions or quantile metrics; nothing runs for the others. Up to three collects.
    `values` and `packs`: the counted quantile values when the per-unit arrays gave them (see
    `UnitArrays`)."""
    spark = exposures.sparkSession
    dimensions = {key: plan.dimensions for key, plan in plans.items() if plan.dimensions}
    quantiles = {key: plan.quantile_metrics for key, plan in plans.items() if plan.quantile_metrics}
    rows: dict[str, LatestRows] = defaultdict(LatestRows)
    labels = None
    try:
        if dimensions:
            attributes = lt.first_exposure_attributes(exposures, dimensions)
            members = lt.slice_members(segments.frame, attributes, lt.dimensions_frame(spark, dimensions))
            labels = lt.slice_labels(members).persist()
            for key, found in by_experiment(collected(lt.slice_units(labels))).items():
                rows[key].slice_units = found
            assert classified is not None  # joined whenever some experiment has dimensions
            for key, found in by_experiment(collected(lt.slice_sums(classified, labels, dimensions))).items():
                rows[key].slice_sums = found
        if quantiles:
            if values is None:
                assert classified is not None  # joined whenever the arrays do not give the values
                values = lt.quantile_values(classified, quantiles)
            sliced = lt.sliced_values(values.where(F.col("experiment").isin(sorted(quantiles))), labels)
            blocks = lt.quantile_blocks(sliced, lt.quantile_probabilities(quantiles), shuffle_partitions(spark), packs)
            for key, found in by_experiment(collected(blocks)).items():
                rows[key].quantiles = found
    finally:
        if labels is not None:
            labels.unpersist()
    return dict(rows)
