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

Incremental reruns (see `incremental` and `unitstate`): with a state directory, a rerun reads
only the rows the kept run did not, updates the units whose new rows are only new events from
their kept per-unit rows, recomputes the other changed units from the lake (twice: as they are
now, and as the kept run saw them), and updates the kept totals; anything that would make that
inexact sends the experiment back to a full recompute, logged with the reason and counted in
RunStats.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pyspark.errors import ArithmeticException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from services.common.catalog import Catalog, MetricDefinition
from services.metrics.job import incremental, io, quality
from services.metrics.job import latest as lt
from services.metrics.job import state as st
from services.metrics.job import transforms as tf
from services.metrics.job import unitstate as us
from services.metrics.job.document import LatestRows, accumulate
from services.metrics.job.incremental import KeptExperiment, Totals
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
    mode: str = "full"  # "incremental" when any experiment was
    incremental_experiments: int = 0
    full_reasons: dict[str, str] = field(default_factory=dict)  # experiment -> why it was full


@dataclass
class Pass:
    """The outcome of one pass: a computation per experiment and the lake files it read,
    plus what a state directory keeps of it."""

    results: dict[str, Computation]
    files: list[Path]
    kept: dict[str, KeptExperiment] = field(default_factory=dict)
    experiments: dict[str, st.ExperimentState] = field(default_factory=dict)
    manifest: st.Manifest = field(default_factory=dict)
    modes: dict[str, st.Mode] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    conflicts: bool = False  # copies of an event disagree: no state is kept (see `_statistics`)


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
    `sliced` ones keep their attributes. `consistent`: every copy has the same unit, variant
    and time."""
    files = [path for key in keys for path in io.exposure_files(lake_dir, key, date_of(options.as_of_us))]
    return read_exposures(spark, files, keys, options.as_of_us, sliced), files


EXPOSURE_CONTENT = ("unit_id", "variant", "ts_us")  # what every copy of one exposure should share


def read_exposures(spark: SparkSession, files: Sequence[Path], keys: Sequence[str], as_of_us: int,
                   sliced: Sequence[str] = ()) -> DataFrame:  # fmt: skip
    raw = tf.with_micros(io.read_parquet(spark, files, io.EXPOSURE_DDL))
    rows = tf.experiment_exposures(raw, keys, as_of_us, sliced).withColumn("content", F.struct(*EXPOSURE_CONTENT))
    return tf.first_received(rows, check="content")


@dataclass
class EventSource:
    """The events of a pass, read and de-duplicated once (see `load_events`)."""

    distinct: DataFrame  # persisted: one row per event_id whose copies agree, by unit
    conflicting: DataFrame | None  # (experiment, event) rows of events whose copies disagree (`tf.conflicting_rows`)
    scopes: DataFrame  # experiment -> (name, since_us)
    cached: DataFrame | None  # what `load_events` persisted (`release` unpersists it)

    def release(self) -> None:
        if self.cached is not None:
            self.cached.unpersist()

    def subset(self, plans: Mapping[str, ExperimentPlan], units: DataFrame | None = None) -> EventSource:
        """The same events for some of the plans (and only `units`' events, when given);
        the releasing stays with this source."""
        distinct = self.distinct if units is None else self.distinct.join(F.broadcast(units), "unit_id", "left_semi")
        keys = list(plans)
        conflicting = None if self.conflicting is None else self.conflicting.where(F.col("experiment").isin(keys))
        if conflicting is not None and units is not None:
            conflicting = conflicting.join(F.broadcast(units), "unit_id", "left_semi")
        return EventSource(distinct, conflicting, scopes_frame(self.scopes.sparkSession, plans), None)

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


def event_listing(lake_dir: Path, plans: Mapping[str, ExperimentPlan], options: JobOptions) -> list[Path]:
    """Every event file any plan can use (its CUPED lookback before day 0 through as-of)."""
    as_of = date_of(options.as_of_us)
    return sorted({
        path for plan in plans.values()
        for path in io.event_files(lake_dir, plan.timeline.day(0), plan.lookback_days, as_of)
    })  # fmt: skip


def read_events(spark: SparkSession, files: Sequence[Path], plans: Mapping[str, ExperimentPlan],
                options: JobOptions, units: DataFrame | None = None) -> EventSource:  # fmt: skip
    """These event files' rows that any plan can use (only `units`' rows, when given), as an
    EventSource the caller releases."""
    names: set[str] = set().union(*(plan.event_names for plan in plans.values()))
    since_us = min((plan.since_us for plan in plans.values()), default=options.as_of_us)
    raw = tf.with_micros(io.read_parquet(spark, files, io.EVENT_DDL))
    relevant = tf.relevant_events(raw, names, since_us, options.as_of_us)
    if units is not None:
        relevant = relevant.join(F.broadcast(units), "unit_id", "left_semi")
    return event_source(relevant, plans)


def load_events(spark: SparkSession, lake_dir: Path, plans: Mapping[str, ExperimentPlan], options: JobOptions
                ) -> tuple[EventSource, list[Path]]:  # fmt: skip
    """Every event partition any plan can use, read once and de-duplicated once (per
    event_id, over the union of the plans' names and the earliest start); the caller
    releases them.

    Events whose copies disagree on name, time or unit (`tf.distinct_events`) are
    de-duplicated per experiment from their raw rows instead, as in a run of its own; a
    cheap check on the persisted frame skips that path when there are none."""
    files = event_listing(lake_dir, plans, options)
    return read_events(spark, files, plans, options), files


def scopes_frame(spark: SparkSession, plans: Mapping[str, ExperimentPlan]) -> DataFrame:
    return tf.event_scopes(spark, {key: (plan.event_names, plan.since_us) for key, plan in plans.items()})


def event_source(relevant: DataFrame, plans: Mapping[str, ExperimentPlan]) -> EventSource:
    """Relevant event rows (with micros, no `experiment`) -> the pass's EventSource."""
    spark = relevant.sparkSession
    scopes = scopes_frame(spark, plans)
    partitions = shuffle_partitions(spark)
    distinct = tf.distinct_events(relevant, partitions).persist()
    disagreeing = distinct.where(~F.col("consistent")).select("id_hash")
    conflicting = disagreeing.unionByName(tf.hashes_across_units(distinct, 4 * partitions))
    rows = None
    consistent = distinct.where(F.col("consistent")).drop("consistent")
    if conflicting.limit(1).count():
        hashes = conflicting.distinct()
        rows = tf.conflicting_rows(relevant, hashes, scopes)
        consistent = consistent.join(F.broadcast(hashes), "id_hash", "left_anti")
    return EventSource(consistent, rows, scopes, distinct)


def shuffle_partitions(spark: SparkSession) -> int:
    """The session's `spark.sql.shuffle.partitions`: the events and the segments are both
    hash-partitioned by unit into this many, so Spark joins them where they are."""
    return int(str(spark.conf.get("spark.sql.shuffle.partitions")))


def _quality_counts(segments: DataFrame, seg_events: DataFrame, events: EventSource, uses: DataFrame,
                    timelines: DataFrame, starts: DataFrame, options: JobOptions
                    ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per experiment: the latest snapshot's data-quality counts, in one collect."""
    units = quality.unit_summary(segments)
    latest = quality.latest_event_summary(seg_events, starts, uses, timelines, options.late_threshold_us)
    seen = quality.event_summary(quality.scoped_summary(events.scoped(), starts), latest)
    nested = F.struct(*[F.col(name) for name in NO_EVENTS]).alias("events")
    joined = units.join(seen.select("experiment", *NO_USED_EVENTS, nested), "experiment", "left")
    counts: dict[str, dict[str, Any]] = {}
    for row in _rows(joined):
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


def micro_deltas(merged: DataFrame, merged_rows: bool = True) -> list[dict[str, Any]]:
    """`tf.contribution_deltas` of merged increments in millionths, collected as decimals
    (`merged_rows` False: increments not yet one row per key)."""
    values = tf.unit_metric_values(merged, micros=True, merged=merged_rows)
    return [tf.from_micros(row) for row in _rows(tf.contribution_deltas(values, micros=True))]


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
    return _rows(tf.contribution_deltas(tf.unit_metric_values(increments)))


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
        keep, written = _unit_writer(tables, us.horizon_frame(spark, {k: p.timeline for k, p in plans.items()}))
        deltas = _by_experiment(contribution_rows(classified, segments, tf.metric_kinds(spark, metrics), keep=keep))
        if tables is not None and not written:
            tables.incomplete("the pass summed in decimals")
        unit_deltas = _by_experiment(_rows(tf.unit_count_deltas(segments)))
        counts = _quality_counts(segments, seg_events, events, tf.event_uses(roles), timelines, starts, options)
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


def _unit_writer(tables: us.UnitTables | None, horizons: DataFrame
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
                 options: JobOptions, state: st.LoadedState | st.Unusable | None = None,
                 force_full: bool = False, tables: us.UnitTables | None = None) -> Pass:  # fmt: skip
    """Every spec's computation in one pass (specs with the same key: the first is used).

    With `state` (what a state directory holds, or why nothing usable), experiments that can
    be are computed incrementally from it (see `incremental`); the others in full, each with
    the reason in `Pass.reasons`."""
    unique = list({spec.key: spec for spec in specs[::-1]}.values())
    results = {spec.key: Computation(*catalog.select(spec.metrics)) for spec in unique}
    keys = [spec.key for spec in unique]
    dimensions = {spec.key: spec.dimensions for spec in unique}
    sliced = [key for key in keys if dimensions[key]]
    exposures, files = load_exposures(spark, lake_dir, keys, options, sliced)
    exposures = exposures.persist()
    outcome = Pass(results, files)
    try:
        summaries = {row.pop("experiment"): row for row in _rows(quality.exposure_summary(exposures))}
        conflicting = {key: summary.pop("conflicting", 0) for key, summary in summaries.items()}
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
            event_files = event_listing(lake_dir, plans, options)
            files += event_files
            outcome.manifest = st.stamp_files(lake_dir, files)
            outcome.experiments = {key: _experiment_state(plan) for key, plan in plans.items()}
            kept = _plan_modes(outcome, plans, conflicting, state, options, force_full)
            statistics = _statistics(outcome, lake_dir, exposures, event_files, plans, kept, state, options, tables)
            for key, (totals, latest) in statistics.items():
                plan = plans[key]
                results[key].snapshots = accumulate(totals.metric_rows(), totals.unit_rows(), plan.timeline.days)
                results[key].quality = {**summaries[key], **totals.quality()}
                results[key].latest = latest
                outcome.kept[key] = KeptExperiment(incremental.timeline_key(plan.timeline, plan.start_us), totals)
    finally:
        exposures.unpersist()
    return outcome


def _experiment_state(plan: ExperimentPlan) -> st.ExperimentState:
    return st.ExperimentState(
        metrics={metric.name: metric.definition_hash for metric in plan.metrics},
        dimensions=plan.dimensions, day0_us=plan.timeline.day0_us,
    )  # fmt: skip


def _all_full(outcome: Pass, reason: str) -> None:
    for key, mode in outcome.modes.items():
        if mode == "incremental":
            outcome.modes[key], outcome.reasons[key] = "full", reason


def _plan_modes(
    outcome: Pass, plans: Mapping[str, ExperimentPlan], conflicting: Mapping[str, int],
    state: st.LoadedState | st.Unusable | None, options: JobOptions, force_full: bool,
) -> dict[str, KeptExperiment]:  # fmt: skip
    """Sets `outcome.modes` and `reasons`; returns the kept totals of the incremental ones."""
    if state is None:
        outcome.modes = {key: "full" for key in plans}
        outcome.reasons = {key: "no state directory" for key in plans}
        return {}
    request = st.RunRequest(options.as_of_us, options.lateness_us, options.late_threshold_us, outcome.experiments,
                            force_full)  # fmt: skip
    planned = st.plan_run(state, request, outcome.manifest)
    outcome.modes, outcome.reasons = dict(planned.modes), dict(planned.reasons)
    kept: dict[str, KeptExperiment] = {}
    if isinstance(state, st.LoadedState) and planned.mode == "incremental":
        try:
            kept = incremental.read_totals(state.directory / incremental.TOTALS_FILE)
        except (OSError, ValueError) as exc:
            _all_full(outcome, f"kept totals unusable: {exc}"[:300])
            return {}
    for key, plan in plans.items():
        if outcome.modes[key] != "incremental":
            continue
        entry = kept.get(key)
        reason = None
        if entry is None:
            reason = "no totals kept for this experiment"
        elif entry.timeline != incremental.timeline_key(plan.timeline, plan.start_us):
            reason = "the timeline moved (a new day, a day froze, or an earlier first exposure)"
        elif plan.dimensions or plan.quantile_metrics:
            reason = "slices and quantile metrics are recomputed in full"
        elif conflicting.get(key):
            reason = "copies of an exposure disagree on unit, variant or time"
        if reason:
            outcome.modes[key], outcome.reasons[key] = "full", reason
    return {key: entry for key, entry in kept.items() if outcome.modes.get(key) == "incremental"}


CONFLICTING_EVENTS = "copies of an event disagree on name, time or unit"


def _statistics(
    outcome: Pass, lake_dir: Path, exposures: DataFrame, event_files: list[Path],
    plans: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment],
    state: st.LoadedState | st.Unusable | None, options: JobOptions, tables: us.UnitTables | None = None,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """The full experiments from every event; the incremental ones from their kept totals and
    the affected units.

    When every experiment of the pass is incremental and they are the kept run's (so the
    events in scope are the same), only the new rows and the affected units' events are read
    (*quick*): with the kept per-unit state, units with only new events are updated from it
    (`_additive`) and the others are recomputed from the lake, now and as the kept run saw
    them (`_increment`). Copies that disagree are looked for among the new rows' event ids
    only: a committed state never reflects copies that disagree (a pass that finds any keeps
    no state), so any now must involve a new row. Otherwise every event in scope is read and
    checked. With `tables`, the pass writes its per-unit state there."""
    spark = exposures.sparkSession
    changed = new_exposures = new_events = None
    kept_files: list[Path] = []
    if isinstance(state, st.LoadedState) and kept:
        steps = [key for key, mode in outcome.modes.items() if mode == "incremental"]
        names: set[str] = set().union(*(plans[key].event_names for key in steps))
        kept_files, added = _kept_and_added(lake_dir, outcome.files, state)
        new_exposures, new_events = incremental.changed_frames(spark, steps, names, added, kept_files,
                                                               state.meta.as_of_us, options.as_of_us)  # fmt: skip
        changed = incremental.changed_rows(new_exposures, new_events).persist()
    events: EventSource | None = None
    split: _Split | None = None
    try:
        quick = changed is not None and set(plans) == set(state.meta.experiments) == set(kept)  # type: ignore[union-attr]
        if quick and tables is not None and ansi_mode(spark):
            why = us.usable(state.directory)  # type: ignore[union-attr]
            if why is None:
                split = _split(exposures, new_exposures, new_events, plans, state, options)  # type: ignore[arg-type]
            else:
                log.info("rerun recomputes the changed units from the lake", extra={"reason": why})
        suspects = changed if split is None else split.hard_ids
        if quick and _new_copies_disagree(spark, event_files, plans, options, suspects):  # type: ignore[arg-type]
            quick = False
            if split is not None:
                split.release()
                split = None
        if not quick:
            events = read_events(spark, event_files, plans, options)
            if events.conflicting is not None:
                outcome.conflicts = True
                _all_full(outcome, CONFLICTING_EVENTS)
            elif tables is not None:
                tables.add_hashes(events.distinct)
        full = {key: plan for key, plan in plans.items() if outcome.modes[key] == "full"}
        steps_plans = {key: plan for key, plan in plans.items() if outcome.modes[key] == "incremental"}
        statistics: dict[str, tuple[Totals, LatestRows]] = {}
        if full:
            assert events is not None  # every experiment incremental is the only quick case
            chosen = exposures.where(F.col("experiment").isin(list(full)))
            statistics.update(compute_statistics(chosen, events.subset(full), full, options, tables))
        if steps_plans and changed is not None and isinstance(state, st.LoadedState):
            if split is not None:
                assert tables is not None
                statistics.update(_additive(split, exposures, event_files, kept_files, steps_plans, kept, state,
                                            options, tables))  # fmt: skip
            else:
                statistics.update(_recomputed(exposures, events, changed, event_files, kept_files, steps_plans, kept,
                                              state, options, tables))  # fmt: skip
        return statistics
    finally:
        if split is not None:
            split.release()
        if events is not None:
            events.release()
        if changed is not None:
            changed.unpersist()


def _recomputed(
    exposures: DataFrame, events: EventSource | None, changed: DataFrame, event_files: list[Path],
    kept_files: list[Path], steps: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment],
    state: st.LoadedState, options: JobOptions, tables: us.UnitTables | None,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """The incremental experiments with every affected unit recomputed from the lake."""
    spark = exposures.sparkSession
    units = changed.select("unit_id").where(F.col("unit_id").isNotNull()).distinct().persist()
    try:
        if tables is not None:
            if events is None:  # quick, without usable per-unit state: the hashes cannot be completed
                tables.incomplete("no usable per-unit state to update")
            elif us.usable(state.directory) is None:
                kept_units = us.read_units(spark, state.directory, list(steps))
                tables.add_units(kept_units.join(units, "unit_id", "left_anti"))
            else:
                tables.incomplete("no usable per-unit state to update")
        if units.isEmpty():  # nothing changed for any unit: the kept totals stand
            return {key: (kept[key].totals, LatestRows()) for key in steps}
        return _increment(exposures, events, units, event_files, kept_files, steps, kept, state, options, tables)
    finally:
        units.unpersist()


@dataclass
class _Split:
    """A quick rerun's new events, and which units cannot be updated from the per-unit state."""

    new: DataFrame  # persisted: the new rows de-duplicated (`tf.distinct_events`)
    hard: DataFrame  # persisted: unit_id of the units recomputed from the lake
    hard_ids: DataFrame  # (unit_id, event_id) of their new event rows, checked for copies that disagree
    segments: DataFrame  # persisted: the other units' segments
    seg_events: DataFrame  # persisted: their (segment, event) rows
    easy: DataFrame  # the other units' new events (DISTINCT_EVENT)
    timelines: Mapping[str, Timeline]

    def release(self) -> None:
        for frame in (self.new, self.hard, self.segments, self.seg_events):
            frame.unpersist()


def _split(exposures: DataFrame, new_exposures: DataFrame, new_events: DataFrame,
           plans: Mapping[str, ExperimentPlan], state: st.LoadedState, options: JobOptions) -> _Split:  # fmt: skip
    """Which units with new rows `_additive` can update: a unit is *hard* (recomputed from the
    lake) when it has a new exposure, a new event whose id hash the kept run counted or that
    repeats among the new rows (under two units, or a collision), copies that disagree, or
    a new (segment, event) row entering before its experiment's horizon."""
    spark = exposures.sparkSession
    partitions = shuffle_partitions(spark)
    names: set[str] = set().union(*(plan.event_names for plan in plans.values()))
    since_us = min(plan.since_us for plan in plans.values())
    relevant = tf.relevant_events(new_events, names, since_us, options.as_of_us)
    new = tf.distinct_events(relevant, partitions).persist()
    # An inner join, so Spark can build its hash table from whichever side is smaller (a semi
    # join builds from the kept hashes, which grow with the lake).
    seen = us.read_hashes(spark, state.directory).join(new.select("id_hash", "unit_id"), "id_hash")
    repeated = new.join(tf.hashes_across_units(new, partitions), "id_hash", "left_semi")
    suspects = [seen, repeated, new.where(~F.col("consistent")), new_exposures]
    hard = suspects[0].select("unit_id")
    for frame in suspects[1:]:
        hard = hard.unionByName(frame.select("unit_id"))
    candidates = new.where(F.col("consistent")).drop("consistent").join(hard, "unit_id", "left_anti")
    timelines = {key: plan.timeline for key, plan in plans.items()}
    frame = tf.timeline_frame(spark, timelines)
    ours = exposures.where(F.col("experiment").isin(list(plans)))
    ours = ours.join(candidates.select("unit_id").distinct(), "unit_id", "left_semi")
    segments = materialized(tf.unit_segments(tf.with_entry_index(ours.repartition(partitions, "unit_id"), frame)))
    source = EventSource(candidates, None, scopes_frame(spark, plans), None)
    seg_events = materialized(tf.segment_event_rows(tf.with_entry_index(source.exposed(segments), frame)))
    early = seg_events.join(F.broadcast(us.horizon_frame(spark, timelines)), "experiment")
    hard = materialized(hard.unionByName(early.where(F.col("c") < F.col("horizon")).select("unit_id")).distinct())
    hard_ids = relevant.join(hard, "unit_id", "left_semi").select("unit_id", "event_id")
    return _Split(new, hard, hard_ids, segments, seg_events, candidates, timelines)


def _additive(
    split: _Split, exposures: DataFrame, event_files: list[Path], kept_files: list[Path],
    steps: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment], state: st.LoadedState,
    options: JobOptions, tables: us.UnitTables,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """Kept totals - the updatable units' kept rows + the same rows with their new events'
    increments; the hard units through `_increment`. Writes the next per-unit state."""
    spark = exposures.sparkSession
    keys = list(steps)
    hard = split.hard
    easy = split.easy.join(hard, "unit_id", "left_anti")
    touched = easy.select("unit_id").distinct()
    seg_events = split.seg_events.join(hard, "unit_id", "left_anti")
    roles = tf.metric_roles(spark, {key: plan.metrics for key, plan in steps.items()})
    increments = tf.event_increments(tf.classify_events(seg_events, roles), micros=True)
    kept_units = us.read_units(spark, state.directory, keys)
    old = updated = None
    try:
        try:
            old = materialized(kept_units.join(touched, "unit_id", "left_semi"))
            updated = materialized(tf.merged_increments(old.unionByName(increments.select(*us.UNIT_COLUMNS))))
            then = _by_experiment(micro_deltas(old))
            now = _by_experiment(micro_deltas(updated))
        except ArithmeticException as exc:
            # Sums or squares past 64 bits: the lake recompute falls back to decimals on its own.
            log.info("64-bit sums would overflow; recomputing the changed units from the lake",
                     extra={"error": str(exc)[:300]})  # fmt: skip
            return _overflowed(split, exposures, kept_units, event_files, kept_files, steps, kept, state, options,
                               tables)  # fmt: skip
        starts = tf.local_frame(spark, [(key, plan.start_us) for key, plan in steps.items()],
                                "experiment string, start_us long")  # fmt: skip
        frame = tf.timeline_frame(spark, split.timelines)
        latest = quality.latest_event_summary(seg_events, starts, tf.event_uses(roles), frame,
                                              options.late_threshold_us)  # fmt: skip
        source = EventSource(easy, None, scopes_frame(spark, steps), None)
        summary = quality.event_summary(quality.scoped_summary(source.scoped(), starts), latest)
        counts = {str(row.pop("experiment")): _event_counts(row) for row in _rows(summary)}
        replaced = touched.unionByName(hard)
        if tables.carry(state.directory, replaced):
            tables.add_hashes(split.new)
        else:
            tables.add_hashes(us.read_hashes(spark, state.directory).unionByName(split.new.select("id_hash")))
            tables.add_units(kept_units.join(replaced, "unit_id", "left_anti"))
        tables.add_units(updated)
    finally:
        for persisted in (old, updated):
            if persisted is not None:
                persisted.unpersist()
    result = {
        key: kept[key].totals.updated(Totals.collected(now.get(key, []), [], counts.get(key)),
                                      Totals.collected(then.get(key, []), [], None))
        for key in keys
    }  # fmt: skip
    recomputed = hard.count()
    log.info("incremental units", extra={"updated": touched.count(), "recomputed": recomputed})
    if recomputed:
        later = _increment(exposures, None, hard, event_files, kept_files, steps,
                           {key: KeptExperiment(kept[key].timeline, totals) for key, totals in result.items()},
                           state, options, tables)  # fmt: skip
        return later
    return {key: (totals, LatestRows()) for key, totals in result.items()}


def _overflowed(
    split: _Split, exposures: DataFrame, kept_units: DataFrame, event_files: list[Path], kept_files: list[Path],
    steps: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment], state: st.LoadedState,
    options: JobOptions, tables: us.UnitTables,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """`_additive` when its 64-bit sums overflow: every unit with new rows recomputed from the
    lake (`_increment`, which sums in decimals when longs do not hold), the others' kept rows
    and every hash carried into one new layer."""
    spark = exposures.sparkSession
    changed = split.new.select("unit_id").where(F.col("unit_id").isNotNull())
    units = materialized(changed.unionByName(split.hard).distinct())
    try:
        tables.add_hashes(us.read_hashes(spark, state.directory).unionByName(split.new.select("id_hash")))
        tables.add_units(kept_units.join(units, "unit_id", "left_anti"))
        return _increment(exposures, None, units, event_files, kept_files, steps, kept, state, options, tables)
    finally:
        units.unpersist()


def _event_counts(row: dict[str, Any]) -> dict[str, Any]:
    """An `quality.event_summary` row in `_quality_counts`' shape, with no unit counts (the
    units updated from their kept rows keep their exposures, so their unit counts stand)."""
    events = {name: row.get(name) or 0 for name in NO_EVENTS if name != "watermark_us"}
    events["watermark_us"] = row.get("watermark_us")
    return {"units": 0, "multiple_variant_units": 0, **{name: row.get(name) or 0 for name in NO_USED_EVENTS},
            "events": events}  # fmt: skip


def _kept_and_added(lake_dir: Path, files: Sequence[Path], state: st.LoadedState) -> tuple[list[Path], list[Path]]:
    names = [(path, path.relative_to(lake_dir).as_posix()) for path in files]
    return [p for p, n in names if n in state.manifest], [p for p, n in names if n not in state.manifest]


def _new_copies_disagree(spark: SparkSession, event_files: Sequence[Path], plans: Mapping[str, ExperimentPlan],
                         options: JobOptions, changed: DataFrame) -> bool:  # fmt: skip
    """Whether any relevant event that has a copy among the new rows has copies that disagree."""
    ids = changed.select("event_id").where(F.col("event_id").isNotNull()).distinct()
    if ids.isEmpty():
        return False
    names: set[str] = set().union(*(plan.event_names for plan in plans.values()))
    since_us = min(plan.since_us for plan in plans.values())
    raw = tf.with_micros(io.read_parquet(spark, event_files, io.EVENT_DDL))
    rows = tf.relevant_events(raw, names, since_us, options.as_of_us).join(F.broadcast(ids), "event_id", "left_semi")
    content = rows.groupBy("event_id").agg(F.countDistinct(F.struct(*tf.CONTENT)).alias("contents"))
    return bool(content.where(F.col("contents") > 1).limit(1).count())


def _increment(
    exposures: DataFrame, events: EventSource | None, units: DataFrame, event_files: list[Path],
    kept_files: list[Path], steps: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment],
    state: st.LoadedState, options: JobOptions, tables: us.UnitTables | None = None,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """Kept totals - the affected units as the kept run saw them (`kept_files` at the kept
    as-of) + as they are now (whose per-unit rows go to `tables`)."""
    spark = exposures.sparkSession
    ours = exposures.where(F.col("experiment").isin(list(steps))).join(F.broadcast(units), "unit_id", "left_semi")
    now_events = events.subset(steps, units) if events is not None else read_events(
        spark, event_files, steps, options, units)  # fmt: skip
    try:
        now = compute_statistics(ours, now_events, steps, options, tables)
    finally:
        now_events.release()
    then_options = replace(options, as_of_us=state.meta.as_of_us)
    kept_exposures = [path for path in kept_files if io.is_exposure_file(path)]
    before = read_exposures(spark, kept_exposures, list(steps), then_options.as_of_us)
    before = before.join(F.broadcast(units), "unit_id", "left_semi")
    old_events = read_events(spark, [path for path in kept_files if not io.is_exposure_file(path)], steps,
                             then_options, units)  # fmt: skip
    try:
        then = compute_statistics(before, old_events, steps, then_options)
    finally:
        old_events.release()
    return {key: (kept[key].totals.updated(now[key][0], then[key][0]), LatestRows()) for key in steps}


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
    options: JobOptions, state_dir: Path | None = None, force_full: bool = False,
) -> tuple[list[Any], int, RunStats]:  # fmt: skip
    """Compute every spec in one pass and publish each document; returns the documents, how
    many experiments failed and what was read. When the pass fails (a corrupt file of one
    experiment, say), each experiment is retried alone, so the others still publish.

    With `state_dir`, the pass starts from the state kept there (see `incremental`) and, once
    the documents are published, keeps its own: a run killed before that commit leaves the
    previous state, and the next run redoes the same increment. `force_full` ignores it."""
    started = time.monotonic()
    for spec in specs:
        log.info("computing results", extra={"experiment": spec.key, "as_of": format_micros(options.as_of_us)})
    store = st.StateStore(state_dir) if state_dir is not None else None
    state = store.load() if store is not None else None
    tables = us.UnitTables(store.stage()) if store is not None else None
    try:
        outcome = compute_pass(spark, lake_dir, specs, catalog, options, state, force_full, tables)
    except Exception:
        if store is not None:
            store.discard_staging()
        if len(specs) <= 1:
            log.exception("metrics job failed", extra={"experiments": [spec.key for spec in specs]})
            return [], len(specs), read_stats([], 0, time.monotonic() - started)
        log.exception("the one-pass run failed; computing each experiment alone")
        return _one_at_a_time(spark, lake_dir, results_dir, specs, catalog, options, started)
    reasons = {key: outcome.reasons.get(key, "") for key, mode in outcome.modes.items() if mode == "full"}
    for key, reason in reasons.items():
        if store is not None:
            log.info("full recompute", extra={"experiment": key, "reason": reason})
    documents, failures = publish_results(results_dir, specs, outcome.results, options)
    if store is not None and tables is not None and outcome.kept and not outcome.conflicts:
        _keep_state(store, outcome, options, tables)
    elif store is not None:
        store.discard_staging()
    steps = sum(mode == "incremental" for mode in outcome.modes.values())
    stats = replace(
        read_stats(outcome.files, len(outcome.results), time.monotonic() - started,
                   "incremental" if steps else "full"),
        incremental_experiments=steps, full_reasons=reasons,
    )  # fmt: skip
    log.info("metrics run finished", extra={**asdict(stats), "failures": failures})
    return documents, failures, stats


def _keep_state(store: st.StateStore, outcome: Pass, options: JobOptions, tables: us.UnitTables) -> None:
    """Add the pass's totals and manifest to its staged per-unit tables and make them the
    current state. A failure here is logged, never fatal: the next run then starts from the
    previous state."""
    try:
        staging = tables.staging
        tables.seal()
        incremental.write_totals(staging / incremental.TOTALS_FILE, outcome.kept)
        meta = st.StateMeta(
            state_version=st.STATE_VERSION, run_id=staging.name.removeprefix(st.STAGING_PREFIX),
            as_of_us=options.as_of_us, lateness_us=options.lateness_us,
            late_threshold_us=options.late_threshold_us,
            experiments={key: outcome.experiments[key] for key in outcome.kept},
        )  # fmt: skip
        store.commit(staging, meta, outcome.manifest)
    except OSError:
        log.exception("could not keep the metrics job's state; the next run starts from the previous one")


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
