"""One pass for many experiments: read -> transforms -> collect -> one results document each.

The lake's exposure partitions of every requested experiment are read once, and so are the
event partitions any of them can use; the events are de-duplicated once per event_id (copies
that disagree on name, time or unit are the exception: those are de-duplicated per experiment,
as a run of its own would), joined once by unit to the exposure segments of all of them, and
aggregated once. What differs between experiments (metrics, windows, CUPED lookback,
variants, and each one's timeline: day 0 = its first exposure, latest day, frozen days) is
data in the plan: small broadcast frames keyed by `experiment` (see `transforms`). The
driver makes two rounds of collects whatever the number of experiments: the exposure
summary (which fixes each timeline), then the deltas, unit deltas and quality counts, plus,
when any experiment has dimensions or quantile metrics, the latest slices and quantile
blocks of all of them (see `latest`). Each experiment's numbers are exactly those of a run
of its own.

Incremental reruns (issue 13) are designed, not built: every run is a full recompute. The
design, for whoever builds it (exact, never approximately equal):
- State under ASSAY_DATA_DIR/state/: immutable directories `v-<run>/` and a pointer file
  `CURRENT` (written to a temporary file, fsynced, renamed: the commit point). A directory holds
  meta.json (STATE_VERSION, the catalog version of every metric used, lateness, late threshold,
  as-of, the specs), the manifest of lake files read (path, size, mtime_ns), and Parquet:
  per (experiment, unit) the de-duplicated rows that can feed it (exposures; events grouped by
  content (event_id, name, ts_us) with the first-received copy and the list of receipt times, so
  `copies` and `last_received_us` follow for any as-of and a later copy merges by min / concat);
  per (experiment, unit, metric, c) the signed contribution rows that `contribution_deltas`
  sums; per (experiment, unit) the unit-count and data-quality contributions; and the per
  (experiment, metric, variant, c) totals the driver accumulates.
- A rerun compares the listing with the manifest. New files are read; a changed or vanished
  file, unreadable state, another STATE_VERSION, catalog version, lateness or threshold, an
  as-of earlier than the state's, or `run --full` means a full recompute (logged with the
  reason and counted; RunStats.mode says which).
- Affected units = units with new rows (a late exposure that moves a unit's first exposure
  is one) plus units holding a row whose entry index can still move: `with_entry_index`
  clamps k_received to `frozen_days`, which grows with as-of, so rows received after
  day0 + lateness + frozen_days(previous) days keep moving until their day freezes. A late
  exposure that moves an experiment's day 0 shifts every index: full recompute of that
  experiment. Windows and CUPED pre-periods are per unit (its first exposure), so they stay
  inside the unit's recomputation.
- Only affected units go through the transforms again; totals = old totals - their old
  contribution rows + their new ones (decimals: exact, order-free); data-quality counts the
  same way (per-unit counts, including events of units never exposed; the watermark is a max).
- Order: publish documents, then write the new state directory, then switch CURRENT. A kill
  before the switch leaves the old state, and the next run redoes the same increment.
- Proof obligation: a hypothesis test feeding batches (late and duplicate events, copies with
  an earlier received_at, late exposures that move first exposures and day 0, catalog
  changes) asserting incremental == full after every batch, and the SIGKILL fault test
  extended to kills between publish and switch.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from services.common.catalog import Catalog, MetricDefinition
from services.metrics.job import io, quality
from services.metrics.job import latest as lt
from services.metrics.job import transforms as tf
from services.metrics.job.document import LatestRows, Snapshot, accumulate
from services.metrics.job.run import Computation, ExperimentSpec, JobOptions, build_document, data_quality
from services.metrics.job.timeline import DAY_US, Timeline, date_of, format_micros

log = logging.getLogger("services.metrics.job")

NO_EVENTS = {"events_without_exposure": 0, "events_before_exposure": 0, "duplicates": 0, "watermark_us": None}
NO_USED_EVENTS = {"late_events_included": 0, "late_after_freeze": 0}


@dataclass(frozen=True)
class ExperimentPlan:
    """What one experiment contributes to the pass: its metrics and its own timeline."""

    key: str
    metrics: tuple[MetricDefinition, ...]
    timeline: Timeline
    start_us: int  # the experiment's first exposure
    dimensions: tuple[str, ...] = ()

    @property
    def since_us(self) -> int:
        """The earliest event time its metrics can use (the CUPED lookback before day 0)."""
        return self.timeline.day0_us - self.lookback_days * DAY_US

    @property
    def lookback_days(self) -> int:
        return max((tf.covariate_lookback_days(metric) for metric in self.metrics), default=0)

    @property
    def quantile_metrics(self) -> tuple[MetricDefinition, ...]:
        return tuple(metric for metric in self.metrics if metric.type == "quantile")

    @property
    def event_names(self) -> set[str]:
        return set().union(*(metric.event_names for metric in self.metrics))


@dataclass(frozen=True)
class RunStats:
    """What one run read and did (the scheduler logs it per round)."""

    experiments: int
    partitions_read: int
    files_read: int
    rows_read: int
    seconds: float
    mode: str = "full"


@dataclass
class Pass:
    """The outcome of one pass: a computation per experiment and the lake files it read."""

    results: dict[str, Computation]
    files: list[Path]


def _loggable(block: Any) -> Any:
    """The data-quality block as JSON types (a dict, or a pydantic model's dump)."""
    return block.model_dump(mode="json") if hasattr(block, "model_dump") else block


def _rows(frame: DataFrame) -> list[dict[str, Any]]:
    return [row.asDict() for row in frame.collect()]


def _by_experiment(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row.pop("experiment")].append(row)
    return grouped


def load_exposures(spark: SparkSession, lake_dir: Path, keys: Sequence[str], options: JobOptions,
                   sliced: Sequence[str] = ()) -> tuple[DataFrame, list[Path]]:  # fmt: skip
    """De-duplicated exposures of these experiments (each from its own partitions); the
    `sliced` ones keep their attributes."""
    files = [path for key in keys for path in io.exposure_files(lake_dir, key, date_of(options.as_of_us))]
    raw = tf.with_micros(io.read_parquet(spark, files, io.EXPOSURE_DDL))
    return tf.first_received(tf.experiment_exposures(raw, keys, options.as_of_us, sliced)), files


@dataclass
class EventSource:
    """The events of a pass, read and de-duplicated once (see `load_events`)."""

    distinct: DataFrame  # persisted: one row per event_id whose copies agree, by unit
    conflicting: DataFrame | None  # (experiment, event) rows of events whose copies disagree
    scopes: DataFrame  # experiment -> (name, since_us)
    cached: DataFrame  # what `load_events` persisted (`release` unpersists it)

    def release(self) -> None:
        self.cached.unpersist()

    def scoped(self) -> DataFrame:
        """One row per (experiment, event) in the experiment's scope, exposed unit or not."""
        rows = tf.scoped_events(self.distinct, self.scopes)
        return rows if self.conflicting is None else rows.unionByName(self.conflicting)

    def exposed(self, segments: DataFrame) -> DataFrame:
        """One row per (segment, event) of exposed units (see `tf.exposed_events`)."""
        rows = tf.exposed_events(self.distinct, segments, self.scopes)
        if self.conflicting is None:
            return rows
        return rows.unionByName(self.conflicting.join(segments, ["experiment", "unit_id"]))


def load_events(spark: SparkSession, lake_dir: Path, plans: Mapping[str, ExperimentPlan], options: JobOptions
                ) -> tuple[EventSource, list[Path]]:  # fmt: skip
    """Every event partition any plan can use, read once and de-duplicated once (per
    event_id, over the union of the plans' names and the earliest start); the caller
    releases them.

    Events whose copies disagree on name, time or unit (`tf.distinct_events`) are
    de-duplicated per experiment from their raw rows instead, as in a run of its own; a
    cheap check on the persisted frame skips that path when there are none."""
    as_of = date_of(options.as_of_us)
    files = sorted({
        path for plan in plans.values()
        for path in io.event_files(lake_dir, plan.timeline.day(0), plan.lookback_days, as_of)
    })  # fmt: skip
    names: set[str] = set().union(*(plan.event_names for plan in plans.values()))
    since_us = min((plan.since_us for plan in plans.values()), default=options.as_of_us)
    raw = tf.with_micros(io.read_parquet(spark, files, io.EVENT_DDL))
    return event_source(tf.relevant_events(raw, names, since_us, options.as_of_us), plans), files


def event_source(relevant: DataFrame, plans: Mapping[str, ExperimentPlan]) -> EventSource:
    """Relevant event rows (with micros, no `experiment`) -> the pass's EventSource."""
    scopes = tf.event_scopes(relevant.sparkSession, {
        key: (plan.event_names, plan.since_us) for key, plan in plans.items()
    })  # fmt: skip
    distinct = tf.distinct_events(relevant).persist()
    conflicting = distinct.where(~F.col("consistent")).select("event_id")
    rows = None
    if conflicting.limit(1).count():
        rows = tf.first_received(tf.experiment_events(relevant.join(conflicting, "event_id", "left_semi"), scopes))
    consistent = distinct.where(F.col("consistent")).drop("consistent")
    return EventSource(consistent, rows, scopes, distinct)


def _quality_counts(segments: DataFrame, classified: DataFrame, events: EventSource, exposed: DataFrame,
                    timelines: DataFrame, starts: DataFrame, options: JobOptions
                    ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per experiment: the latest snapshot's data-quality counts, in one collect."""
    units = quality.unit_summary(segments)
    used = quality.used_event_summary(classified, timelines, options.late_threshold_us)
    seen = quality.event_summary(events.scoped(), exposed, starts)
    nested = F.struct(*[F.col(name) for name in NO_EVENTS]).alias("events")
    joined = units.join(used, "experiment", "left").join(seen.select("experiment", nested), "experiment", "left")
    counts: dict[str, dict[str, Any]] = {}
    for row in _rows(joined):
        key, events_row = str(row.pop("experiment")), row.pop("events")
        entry: dict[str, Any] = {name: NO_USED_EVENTS.get(name) if value is None else value
                                 for name, value in row.items()}  # fmt: skip
        entry["events"] = events_row.asDict() if events_row is not None else dict(NO_EVENTS)
        counts[key] = entry
    return counts


def compute_statistics(
    exposures: DataFrame, events: EventSource, plans: Mapping[str, ExperimentPlan], options: JobOptions
) -> dict[str, tuple[list[Snapshot], dict[str, Any], LatestRows]]:
    """De-duplicated exposures (with `experiment`) and the pass's events -> per experiment:
    cumulative snapshots, the latest data-quality counts, and the latest slices and quantile
    blocks."""
    spark = exposures.sparkSession
    timelines = tf.timeline_frame(spark, {key: plan.timeline for key, plan in plans.items()})
    metrics = {key: plan.metrics for key, plan in plans.items()}
    starts = tf.local_frame(spark, [(key, plan.start_us) for key, plan in plans.items()],
                            "experiment string, start_us long")  # fmt: skip
    segments = tf.unit_segments(tf.with_entry_index(exposures, timelines)).persist()
    exposed = events.exposed(segments)
    seg_events = tf.in_segment(tf.with_entry_index(exposed, timelines))
    classified = tf.classify_events(seg_events, tf.metric_roles(spark, metrics)).persist()
    try:
        increments = tf.metric_increments(classified, segments, tf.metric_kinds(spark, metrics))
        deltas = _by_experiment(_rows(tf.contribution_deltas(tf.unit_metric_values(increments))))
        unit_deltas = _by_experiment(_rows(tf.unit_count_deltas(segments)))
        counts = _quality_counts(segments, classified, events, exposed, timelines, starts, options)
        latest = latest_statistics(exposures, segments, classified, plans)
    finally:
        classified.unpersist()
        segments.unpersist()
    return {
        key: (accumulate(deltas.get(key, []), unit_deltas.get(key, []), plan.timeline.days), counts[key],
              latest.get(key, LatestRows()))
        for key, plan in plans.items()
    }  # fmt: skip


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
            for key, found in _by_experiment(_rows(lt.slice_units(labels))).items():
                rows[key].slice_units = found
            for key, found in _by_experiment(_rows(lt.slice_sums(classified, labels, dimensions))).items():
                rows[key].slice_sums = found
        if quantiles:
            values = lt.quantile_values(classified, labels, quantiles)
            blocks = lt.quantile_blocks(values, lt.quantile_probabilities(spark, quantiles))
            for key, found in _by_experiment(_rows(blocks)).items():
                rows[key].quantiles = found
    finally:
        if labels is not None:
            labels.unpersist()
    return dict(rows)


def compute_pass(spark: SparkSession, lake_dir: Path, specs: Sequence[ExperimentSpec], catalog: Catalog,
                 options: JobOptions) -> Pass:  # fmt: skip
    """Every spec's computation in one pass (specs with the same key: the first is used)."""
    unique = list({spec.key: spec for spec in specs[::-1]}.values())
    results = {spec.key: Computation(*catalog.select(spec.metrics)) for spec in unique}
    keys = [spec.key for spec in unique]
    dimensions = {spec.key: spec.dimensions for spec in unique}
    sliced = [key for key in keys if dimensions[key]]
    exposures, files = load_exposures(spark, lake_dir, keys, options, sliced)
    exposures = exposures.persist()
    try:
        summaries = {row.pop("experiment"): row for row in _rows(quality.exposure_summary(exposures))}
        plans: dict[str, ExperimentPlan] = {}
        for key in keys:
            summary = summaries.get(key)
            if not summary or not summary["exposures"]:
                results[key].quality = {"exposures": 0, "duplicates": 0, "watermark_us": None}
                continue
            timeline = Timeline.build(summary["first_us"], options.as_of_us, options.lateness_us)
            plans[key] = ExperimentPlan(
                key, tuple(results[key].metrics), timeline, summary["first_us"], dimensions[key]
            )
            results[key].timeline = timeline
            results[key].variants_seen = set(summary.pop("variants"))
        if plans:
            events, event_files = load_events(spark, lake_dir, plans, options)
            files += event_files
            try:
                statistics = compute_statistics(exposures, events, plans, options)
            finally:
                events.release()
            for key, (snapshots, counts, latest) in statistics.items():
                results[key].snapshots = snapshots
                results[key].quality = {**summaries[key], **counts}
                results[key].latest = latest
    finally:
        exposures.unpersist()
    return Pass(results, files)


def read_stats(files: Sequence[Path], experiments: int, seconds: float, mode: str = "full") -> RunStats:
    """Partitions (date directories, per experiment for exposures), files and rows read; rows
    come from the Parquet footers (no data is read again)."""
    rows = 0
    for path in files:
        try:
            rows += pq.read_metadata(path).num_rows
        except (OSError, ValueError):  # vanished or unreadable: the run itself would have failed
            continue
    partitions = len({path.parent for path in files})
    return RunStats(experiments, partitions, len(files), rows, round(seconds, 3), mode)


def publish_results(results_dir: Path, specs: Sequence[ExperimentSpec], results: Mapping[str, Computation],
                    options: JobOptions) -> tuple[list[Any], int]:  # fmt: skip
    """One document per spec; a failure to publish one is logged and counted, the others publish."""
    documents, failures = [], 0
    for spec in specs:
        try:
            result = results[spec.key]
            document = build_document(spec, result, options, format_micros(time.time_ns() // 1000))
            path = io.publish(results_dir, document)
        except Exception:
            failures += 1
            log.exception("metrics job failed", extra={"experiment": spec.key})
            continue
        documents.append(document)
        log.info("results published", extra={
            "experiment": spec.key, "path": str(path), "data_quality": _loggable(data_quality(result.quality)),
        })  # fmt: skip
    return documents, failures


def run_experiments(
    spark: SparkSession, lake_dir: Path, results_dir: Path, specs: Sequence[ExperimentSpec], catalog: Catalog,
    options: JobOptions,
) -> tuple[list[Any], int, RunStats]:  # fmt: skip
    """Compute every spec in one pass and publish each document; returns the documents, how
    many experiments failed and what was read. When the pass fails (a corrupt file of one
    experiment, say), each experiment is retried alone, so the others still publish."""
    started = time.monotonic()
    for spec in specs:
        log.info("computing results", extra={"experiment": spec.key, "as_of": format_micros(options.as_of_us)})
    try:
        outcome = compute_pass(spark, lake_dir, specs, catalog, options)
    except Exception:
        if len(specs) <= 1:
            log.exception("metrics job failed", extra={"experiments": [spec.key for spec in specs]})
            return [], len(specs), read_stats([], 0, time.monotonic() - started)
        log.exception("the one-pass run failed; computing each experiment alone")
        return _one_at_a_time(spark, lake_dir, results_dir, specs, catalog, options, started)
    documents, failures = publish_results(results_dir, specs, outcome.results, options)
    stats = read_stats(outcome.files, len(outcome.results), time.monotonic() - started)
    log.info("metrics run finished", extra={**asdict(stats), "failures": failures})
    return documents, failures, stats


def _one_at_a_time(
    spark: SparkSession, lake_dir: Path, results_dir: Path, specs: Sequence[ExperimentSpec], catalog: Catalog,
    options: JobOptions, started: float,
) -> tuple[list[Any], int, RunStats]:  # fmt: skip
    documents: list[Any] = []
    failures, files, computed = 0, [], 0
    for spec in specs:
        try:
            outcome = compute_pass(spark, lake_dir, [spec], catalog, options)
        except Exception:
            failures += 1
            log.exception("metrics job failed", extra={"experiment": spec.key})
            continue
        published, failed = publish_results(results_dir, [spec], outcome.results, options)
        documents += published
        failures += failed
        files += outcome.files
        computed += 1
    stats = read_stats(sorted(set(files)), computed, time.monotonic() - started)
    log.info("metrics run finished", extra={**asdict(stats), "failures": failures})
    return documents, failures, stats
