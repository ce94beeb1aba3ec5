"""One pass's statistics from its exposures and events: per experiment, the per-snapshot
changes of every sufficient statistic and unit count, the latest data-quality counts, and
the latest slices and quantile blocks (`compute_statistics`).

The events are joined once by unit to the exposure segments of every experiment and
aggregated once; what differs between experiments is data in the plan (small broadcast
frames keyed by `experiment`, see `transforms`). Sums run in 64-bit millionths when the
session is in ANSI mode, in decimals otherwise or after an overflow (`contribution_rows`)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pyspark.errors import ArithmeticException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from services.metrics.job import latest as lt
from services.metrics.job import quality
from services.metrics.job import transforms as tf
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


def quality_counts(segments: DataFrame, seg_events: DataFrame, events: EventSource, uses: DataFrame,
                    timelines: DataFrame, starts: DataFrame, options: JobOptions
                    ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per experiment: the latest snapshot's data-quality counts, in one collect."""
    units = quality.unit_summary(segments)
    latest = quality.latest_event_summary(seg_events, starts, uses, timelines, options.late_threshold_us)
    seen = quality.event_summary(quality.scoped_summary(events.scoped(), starts), latest)
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


def ansi_mode(spark: SparkSession) -> bool:
    """Whether integer overflow raises in this session (Spark 4's default). Asked without a
    default of our own: `conf.get(key, default)` answers that default for a key never set."""
    return str(spark.conf.get("spark.sql.ansi.enabled")).lower() == "true"


def micro_deltas(merged: DataFrame) -> list[dict[str, Any]]:
    """`tf.contribution_deltas` of merged increments in millionths, collected as decimals."""
    values = tf.unit_metric_values(merged, micros=True, merged=True)
    return [tf.from_micros(row) for row in collected(tf.contribution_deltas(values, micros=True))]


def contribution_rows(classified: DataFrame, segments: DataFrame, kinds: DataFrame, micros: bool | None = None,
                      keep: Callable[[DataFrame], None] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """`tf.contribution_deltas` over the classified events, collected. In 64-bit millionths
    when the session runs in ANSI mode (an overflow then raises instead of wrapping), and in
    decimals otherwise or after such an overflow (values or sums beyond what longs hold):
    the same rows either way. `micros` forces one way (True still falls back). `keep` gets
    the merged increments (millionths) once their deltas are collected; never on the decimal
    path."""
    spark = classified.sparkSession
    if micros is None:
        micros = ansi_mode(spark)
    if micros:
        increments = tf.metric_increments(classified, segments, kinds, micros=True)
        merged = tf.merged_increments(increments)
        try:
            if keep is None:
                return micro_deltas(merged)
            merged = materialized(merged)
            rows = micro_deltas(merged)
            keep(merged)
            return rows
        except ArithmeticException as exc:
            log.info("64-bit sums would overflow; computing in decimals", extra={"error": str(exc)[:300]})
        finally:
            merged.unpersist()
    increments = tf.metric_increments(classified, segments, kinds)
    return collected(tf.contribution_deltas(tf.unit_metric_values(increments)))


def materialized(frame: DataFrame) -> DataFrame:
    """`frame`, persisted and computed now. Spark knows a cached frame's partitioning (here: by
    unit) only once it is computed; planned before, every later query would shuffle it again."""
    frame = frame.persist()
    frame.count()
    return frame


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
    by_unit = exposures.repartition(shuffle_partitions(spark), "unit_id")
    segments = materialized(tf.unit_segments(tf.with_entry_index(by_unit, timelines)))
    seg_events = None
    try:
        # The (segment, event) rows: the deltas and the data-quality counts each join them
        # again from the persisted events (measured: as fast as persisting them, in less
        # memory); when the slices and quantile blocks read them too, they are persisted.
        seg_events = tf.segment_event_rows(tf.with_entry_index(events.exposed(segments), timelines))
        if any(plan.dimensions or plan.quantile_metrics for plan in plans.values()):
            seg_events = materialized(seg_events)
        roles = tf.metric_roles(spark, metrics)
        classified = tf.classify_events(seg_events, roles)
        keep, written = unit_writer(tables, us.horizon_frame(spark, {k: p.timeline for k, p in plans.items()}))
        deltas = by_experiment(contribution_rows(classified, segments, tf.metric_kinds(spark, metrics), keep=keep))
        if tables is not None and not written:
            tables.incomplete("the pass summed in decimals")
        unit_deltas = by_experiment(collected(tf.unit_count_deltas(segments)))
        counts = quality_counts(segments, seg_events, events, tf.event_uses(roles), timelines, starts, options)
        latest = latest_statistics(exposures, segments, classified, plans)
    finally:
        if seg_events is not None:
            seg_events.unpersist()
        segments.unpersist()
    return {
        key: (Totals.collected(deltas.get(key, []), unit_deltas.get(key, []), counts.get(key)),
              latest.get(key, LatestRows()))
        for key in plans
    }  # fmt: skip


def unit_writer(tables: us.UnitTables | None, horizons: DataFrame
                 ) -> tuple[Callable[[DataFrame], None] | None, list[bool]]:  # fmt: skip
    """What `contribution_rows` hands the merged increments to (None without tables), and a
    list that is non-empty once it has written them."""
    written: list[bool] = []
    if tables is None:
        return None, written
    sink = tables

    def keep(merged: DataFrame) -> None:
        sink.add_units(us.horizon_rows(merged, horizons))
        written.append(True)

    return keep, written


def latest_statistics(exposures: DataFrame, segments: DataFrame, classified: DataFrame,
                      plans: Mapping[str, ExperimentPlan]) -> dict[str, LatestRows]:  # fmt: skip
    """Slices and quantile blocks of the latest snapshot (see `latest`), for the experiments
    with dimensions or quantile metrics; nothing runs for the others. Up to three collects."""
    spark = exposures.sparkSession
    dimensions = {key: plan.dimensions for key, plan in plans.items() if plan.dimensions}
    quantiles = {key: plan.quantile_metrics for key, plan in plans.items() if plan.quantile_metrics}
    rows: dict[str, LatestRows] = defaultdict(LatestRows)
    labels = None
    try:
        if dimensions:
            attributes = lt.first_exposure_attributes(exposures, dimensions)
            members = lt.slice_members(segments, attributes, lt.dimensions_frame(spark, dimensions))
            labels = lt.slice_labels(members).persist()
            for key, found in by_experiment(collected(lt.slice_units(labels))).items():
                rows[key].slice_units = found
            for key, found in by_experiment(collected(lt.slice_sums(classified, labels, dimensions))).items():
                rows[key].slice_sums = found
        if quantiles:
            values = lt.quantile_values(classified, labels, quantiles)
            blocks = lt.quantile_blocks(values, lt.quantile_probabilities(spark, quantiles))
            for key, found in by_experiment(collected(blocks)).items():
                rows[key].quantiles = found
    finally:
        if labels is not None:
            labels.unpersist()
    return dict(rows)
