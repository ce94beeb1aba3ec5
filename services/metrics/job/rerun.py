"""The statistics of a pass with a state directory (`pass_statistics`): the experiments in
full from every event, the incremental ones from their kept totals.

A rerun reads only the rows the kept run did not (see `incremental`), updates the units
whose new rows are only new events from their kept per-unit rows (`_additive`, see
`unitstate`), recomputes the other changed units from the lake, as they are now and as the
kept run saw them (`_increment`), and updates the kept totals; anything that would make that
inexact sends the experiment back to a full recompute, logged with the reason and counted
in RunStats."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pyspark.errors import ArithmeticException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from services.metrics.job import incremental, io, quality
from services.metrics.job import state as st
from services.metrics.job import transforms as tf
from services.metrics.job import unitstate as us
from services.metrics.job.aggregate import (
    NO_EVENTS,
    NO_USED_EVENTS,
    ansi_mode,
    by_experiment,
    collected,
    compute_statistics,
    materialized,
    micro_deltas,
)
from services.metrics.job.document import LatestRows
from services.metrics.job.incremental import KeptExperiment, Totals
from services.metrics.job.plan import ExperimentPlan, Pass
from services.metrics.job.run import JobOptions
from services.metrics.job.sources import (
    EventSource,
    ExposureSource,
    read_events,
    read_exposures,
    scopes_frame,
    shuffle_partitions,
)
from services.metrics.job.timeline import Timeline

log = logging.getLogger("services.metrics.job")


CONFLICTING_EVENTS = "copies of an event disagree on name, time or unit"


def pass_statistics(
    outcome: Pass, lake_dir: Path, exposures: ExposureSource, event_files: list[Path],
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
    spark = exposures.frame.sparkSession
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
                outcome.all_full(CONFLICTING_EVENTS)
            elif tables is not None:
                tables.add_hashes(events.distinct)
        full = {key: plan for key, plan in plans.items() if outcome.modes[key] == "full"}
        steps_plans = {key: plan for key, plan in plans.items() if outcome.modes[key] == "incremental"}
        statistics: dict[str, tuple[Totals, LatestRows]] = {}
        if full:
            assert events is not None  # every experiment incremental is the only quick case
            chosen = exposures.frame.where(F.col("experiment").isin(list(full)))
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
    exposures: ExposureSource, events: EventSource | None, changed: DataFrame, event_files: list[Path],
    kept_files: list[Path], steps: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment],
    state: st.LoadedState, options: JobOptions, tables: us.UnitTables | None,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """The incremental experiments with every affected unit recomputed from the lake."""
    spark = exposures.frame.sparkSession
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
    easy: DataFrame  # persisted: the other units' new events (DISTINCT_EVENT)
    timelines: Mapping[str, Timeline]
    cached: list[DataFrame]  # more frames to unpersist

    def release(self) -> None:
        for frame in (self.new, self.hard, self.segments, self.seg_events, self.easy, *self.cached):
            frame.unpersist()


def _split(exposures: ExposureSource, new_exposures: DataFrame, new_events: DataFrame,
           plans: Mapping[str, ExperimentPlan], state: st.LoadedState, options: JobOptions) -> _Split:  # fmt: skip
    """Which units with new rows `_additive` can update: a unit is *hard* (recomputed from the
    lake) when it has a new exposure, a new event whose id hash the kept run counted or that
    repeats among the new rows (under two units, or a collision), copies that disagree, or
    a new (segment, event) row entering before its experiment's horizon."""
    spark = exposures.frame.sparkSession
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
    # Both read more than once below: computed once (the kept hashes are joined here only).
    suspected = materialized(hard.distinct())
    candidates = materialized(
        new.where(F.col("consistent")).drop("consistent").join(F.broadcast(suspected), "unit_id", "left_anti")
    )
    timelines = {key: plan.timeline for key, plan in plans.items()}
    frame = tf.timeline_frame(spark, timelines)
    ours = exposures.of_units(list(plans), candidates.select("unit_id").distinct())
    segments = materialized(tf.unit_segments(tf.with_entry_index(ours.repartition(partitions, "unit_id"), frame)))
    source = EventSource(candidates, None, scopes_frame(spark, plans), None)
    seg_events = materialized(tf.segment_event_rows(tf.with_entry_index(source.exposed(segments), frame)))
    early = seg_events.join(F.broadcast(us.horizon_frame(spark, timelines)), "experiment")
    hard = materialized(suspected.unionByName(early.where(F.col("c") < F.col("horizon")).select("unit_id")).distinct())
    hard_ids = relevant.join(hard, "unit_id", "left_semi").select("unit_id", "event_id")
    return _Split(new, hard, hard_ids, segments, seg_events, candidates, timelines, [suspected])


def _additive(
    split: _Split, exposures: ExposureSource, event_files: list[Path], kept_files: list[Path],
    steps: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment], state: st.LoadedState,
    options: JobOptions, tables: us.UnitTables,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """Kept totals - the updatable units' kept rows + the same rows with their new events'
    increments (both in one pass, signed); the hard units through `_increment`. Writes the
    next per-unit state."""
    spark = exposures.frame.sparkSession
    keys = list(steps)
    hard = split.hard
    easy = split.easy.join(hard, "unit_id", "left_anti")
    touched = easy.select("unit_id").distinct()
    seg_events = split.seg_events.join(hard, "unit_id", "left_anti")
    roles = tf.metric_roles(spark, {key: plan.metrics for key, plan in steps.items()})
    increments = tf.event_increments(tf.classify_events(seg_events, roles), micros=True)
    kept_units = us.read_units(spark, state.directory, keys)
    touched = materialized(touched)
    merged = None
    try:
        try:
            merged = _versions(kept_units.join(F.broadcast(touched), "unit_id", "left_semi"),
                               increments.select(*us.UNIT_COLUMNS))  # fmt: skip
            net = by_experiment(micro_deltas(merged.where(F.col("changes")).drop("changes")))
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
        counts = {str(row.pop("experiment")): _event_counts(row) for row in collected(summary)}
        replaced = touched.unionByName(hard)
        if tables.carry(state.directory, replaced):
            tables.add_hashes(split.new)
        else:
            _rewrite(tables, state, split, kept_units, replaced)
        tables.add_units(merged.where(F.col(tf.SIGN) == 1))
        updated_units = touched.count()
    finally:
        for persisted in (touched, merged):
            if persisted is not None:
                persisted.unpersist()
    result = {
        key: kept[key].totals.updated(Totals.collected(net.get(key, []), [], counts.get(key)), Totals())
        for key in keys
    }  # fmt: skip
    recomputed = hard.count()
    log.info("incremental units", extra={"updated": updated_units, "recomputed": recomputed})
    if recomputed:
        later = _increment(exposures, None, hard, event_files, kept_files, steps,
                           {key: KeptExperiment(kept[key].timeline, totals) for key, totals in result.items()},
                           state, options, tables)  # fmt: skip
        return later
    return {key: (totals, LatestRows()) for key, totals in result.items()}


def _versions(kept_rows: DataFrame, moved: DataFrame) -> DataFrame:
    """The touched units' kept rows and the new events' increments (both UNIT_COLUMNS) -> the
    units' merged rows now (SIGN 1: what the next state keeps) and, for each (experiment,
    unit, metric) the new events move (`changes`), also as the kept run had them (SIGN -1).
    The others are the same then and now, so their contributions would cancel.

    Persisted and laid out by unit: the one exchange; the flag, the merge and both windows of
    the deltas all group by unit, so Spark runs them where the rows are."""
    rows = kept_rows.withColumn("new", F.lit(False)).unionByName(moved.withColumn("new", F.lit(True)))
    rows = rows.repartition(shuffle_partitions(rows.sparkSession), "unit_id")
    changes = F.max("new").over(Window.partitionBy("experiment", "unit_id", "metric"))
    both = F.array(F.lit(-1), F.lit(1))
    signs = F.when(F.col("changes") & ~F.col("new"), both).otherwise(F.array(F.lit(1)))
    exploded = rows.withColumn("changes", changes).withColumn(tf.SIGN, F.explode(signs))
    sums = [F.sum(name).alias(name) for name in ("num", "den", "pre")]
    return materialized(exploded.groupBy(*tf.SEGMENT_KEYS, "c", "changes", tf.SIGN).agg(*sums))


def _overflowed(
    split: _Split, exposures: ExposureSource, kept_units: DataFrame, event_files: list[Path], kept_files: list[Path],
    steps: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment], state: st.LoadedState,
    options: JobOptions, tables: us.UnitTables,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """`_additive` when its 64-bit sums overflow: every unit with new rows recomputed from the
    lake (`_increment`, which sums in decimals when longs do not hold), the others' kept rows
    and every hash carried into one new layer."""
    changed = split.new.select("unit_id").where(F.col("unit_id").isNotNull())
    units = materialized(changed.unionByName(split.hard).distinct())
    try:
        _rewrite(tables, state, split, kept_units, units)
        return _increment(exposures, None, units, event_files, kept_files, steps, kept, state, options, tables)
    finally:
        units.unpersist()


def _rewrite(tables: us.UnitTables, state: st.LoadedState, split: _Split, kept_units: DataFrame,
             replaced: DataFrame) -> None:  # fmt: skip
    """A whole new layer 0 instead of a layer on the kept ones: every kept hash plus the new
    ones, and the kept rows of every unit but the `replaced` (whose rows the caller adds)."""
    tables.add_hashes(us.read_hashes(kept_units.sparkSession, state.directory).unionByName(split.new.select("id_hash")))
    tables.add_units(kept_units.join(replaced, "unit_id", "left_anti"))


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
    exposures: ExposureSource, events: EventSource | None, units: DataFrame, event_files: list[Path],
    kept_files: list[Path], steps: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment],
    state: st.LoadedState, options: JobOptions, tables: us.UnitTables | None = None,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """Kept totals - the affected units as the kept run saw them (`kept_files` at the kept
    as-of) + as they are now (whose per-unit rows go to `tables`)."""
    spark = exposures.frame.sparkSession
    ours = exposures.of_units(list(steps), units)
    now_events = events.subset(steps, units) if events is not None else read_events(
        spark, event_files, steps, options, units)  # fmt: skip
    try:
        now = compute_statistics(ours, now_events, steps, options, tables)
    finally:
        now_events.release()
    then_options = replace(options, as_of_us=state.meta.as_of_us)
    kept_exposures = [path for path in kept_files if io.is_exposure_file(path)]
    # Picked before de-duplication: every copy of an incremental experiment's exposures agrees.
    before = read_exposures(spark, kept_exposures, list(steps), then_options.as_of_us, units=units)
    old_events = read_events(spark, [path for path in kept_files if not io.is_exposure_file(path)], steps,
                             then_options, units)  # fmt: skip
    try:
        then = compute_statistics(before, old_events, steps, then_options)
    finally:
        old_events.release()
    return {key: (kept[key].totals.updated(now[key][0], then[key][0]), LatestRows()) for key in steps}
