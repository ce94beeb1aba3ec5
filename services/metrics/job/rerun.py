"""The statistics of a pass with a state directory (`pass_statistics`): the experiments in
full from every event, the incremental ones from their kept totals.

A rerun reads only the rows the kept run did not (see `incremental`), updates the units
whose new rows are only new events from their kept per-unit rows (`_additive`, in the
per-unit arrays of `unitmath`, see `unitstate`), recomputes the other changed units from
the lake, as they are now and as the kept run saw them (`_increment`), and updates the kept
totals; anything that would make that inexact sends the experiment back to a full
recompute, logged with the reason and counted in RunStats."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from services.metrics.job import incremental, io, localrerun
from services.metrics.job import state as st
from services.metrics.job import transforms as tf
from services.metrics.job import unitmath as um
from services.metrics.job import unitstate as us
from services.metrics.job.aggregate import (
    ansi_mode,
    array_deltas,
    array_event_counts,
    array_parts,
    by_experiment,
    compute_statistics,
    materialized,
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
    shuffle_partitions,
)

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
    them (`_increment`); when no exposure is new and the new rows are few, on the driver
    (`localrerun`) if it can take every changed unit. Copies that disagree are looked for among the new rows' event ids
    only: a committed state never reflects copies that disagree (a pass that finds any keeps
    no state), so any now must involve a new row. Otherwise every event in scope is read and
    checked. With `tables`, the pass writes its per-unit state there."""
    spark = exposures.spark
    changed = new_exposures = new_events = None
    kept_files: list[Path] = []
    quick = False
    if isinstance(state, st.LoadedState) and kept:
        steps = [key for key, mode in outcome.modes.items() if mode == "incremental"]
        names: set[str] = set().union(*(plans[key].event_names for key in steps))
        kept_files, added = _kept_and_added(lake_dir, outcome.files, state)
        window = (state.meta.as_of_us, options.as_of_us)
        new_events = incremental.changed_events(spark, names, added, kept_files, *window)
        quick = set(plans) == set(state.meta.experiments) == set(kept)
        # The kept exposure summaries stand (no exposure is new): a small rerun goes on the driver.
        if (quick and tables is not None and not exposures.cached and options.driver_rerun_events > 0
                and ansi_mode(spark) and us.usable(state.directory) is None):  # fmt: skip
            local = localrerun.statistics(new_events, plans, kept, state, options, tables)
            if local is not None:
                return local
        new_exposures = incremental.changed_exposures(spark, steps, added, kept_files, *window)
        changed = incremental.changed_rows(new_exposures, new_events).persist()
    events: EventSource | None = None
    split: _Split | None = None
    try:
        if quick and tables is not None and ansi_mode(spark):
            why = us.usable(state.directory)  # type: ignore[union-attr]
            if why is None:
                split = _split(new_exposures, new_events, plans, state, options)  # type: ignore[arg-type]
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
    spark = exposures.spark
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
    """A quick rerun's new events, and which units are recomputed from the lake whatever their
    new rows (`suspected`)."""

    new: DataFrame  # persisted: the new rows de-duplicated (`tf.distinct_events`)
    suspected: DataFrame  # persisted: unit_id
    hard_ids: DataFrame  # (unit_id, event_id) of their new event rows, checked for copies that disagree
    easy: DataFrame  # persisted: the other units' new events (DISTINCT_EVENT)

    def release(self) -> None:
        for frame in (self.new, self.suspected, self.easy):
            frame.unpersist()


def _split(new_exposures: DataFrame, new_events: DataFrame, plans: Mapping[str, ExperimentPlan],
           state: st.LoadedState, options: JobOptions) -> _Split:  # fmt: skip
    """Which units with new rows `_additive` cannot update, whatever their rows' entry: a new
    exposure, a new event whose id hash the kept run counted or that repeats among the new
    rows (under two units, or a collision), or copies that disagree. (Those with a row entering
    before its experiment's horizon `_additive` finds itself.) Only the suspected units' new
    events can have copies that disagree: the others' ids are new to the lake, once each."""
    spark = new_events.sparkSession
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
    suspected = materialized(hard.distinct())
    easy = materialized(
        new.where(F.col("consistent")).drop("consistent").join(F.broadcast(suspected), "unit_id", "left_anti")
    )
    hard_ids = relevant.join(suspected, "unit_id", "left_semi").select("unit_id", "event_id")
    return _Split(new, suspected, hard_ids, easy)


def _additive(
    split: _Split, exposures: ExposureSource, event_files: list[Path], kept_files: list[Path],
    steps: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment], state: st.LoadedState,
    options: JobOptions, tables: us.UnitTables,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """Kept totals - the updatable units' contributions as their kept rows give them + the
    same with their new events' increments, from the per-unit arrays (`unitmath.rerun_rows`:
    one pass over the new events, their units' segments and kept rows); the other units
    through `_increment`. Writes the next per-unit state."""
    spark = exposures.spark
    keys = list(steps)
    partitions = shuffle_partitions(spark)
    touched = materialized(split.easy.select("unit_id").distinct())
    kept_units = us.read_units(spark, state.directory, keys)
    output = None
    try:
        # Their exposures are the kept run's, so are their segments: the kept rows give them.
        theirs = kept_units.join(F.broadcast(touched), "unit_id", "left_semi")
        rows = um.input_rows(split.easy, None, None, partitions, theirs)
        plan = um.UnitPlan.build(steps, options.late_threshold_us, keep_units=True)
        output = um.output_rows(rows, plan, rerun=True).persist()
        parts = array_parts(output)
        if parts[um.OVERFLOW]:
            # Sums or squares past 64 bits: the lake recompute falls back to decimals on its own.
            log.info("64-bit sums would overflow; recomputing the changed units from the lake")
            return _overflowed(split, exposures, kept_units, event_files, kept_files, steps, kept, state, options,
                               tables)  # fmt: skip
        net = by_experiment(array_deltas(parts))
        counts = array_event_counts(parts)
        early = [str(row["unit_id"]) for row in parts[um.HARD]]
        replaced = touched.unionByName(split.suspected)
        if tables.carry(state.directory, replaced):
            tables.add_hashes(split.new)
        else:
            _rewrite(tables, state, split, kept_units, replaced)
        tables.add_units(um.unit_rows(output))
        updated_units = touched.count() - len(early)
    finally:
        touched.unpersist()
        if output is not None:
            output.unpersist()
    result = {
        key: kept[key].totals.updated(Totals.collected(net.get(key, []), [], counts.get(key)), Totals())
        for key in keys
    }  # fmt: skip
    recomputed = split.suspected.count() + len(early)
    log.info("incremental units", extra={"updated": updated_units, "recomputed": recomputed})
    if recomputed:
        hard = split.suspected.unionByName(tf.local_frame(spark, [(unit,) for unit in early], "unit_id string"))
        return _increment(exposures, None, hard, event_files, kept_files, steps,
                          {key: KeptExperiment(kept[key].timeline, totals) for key, totals in result.items()},
                          state, options, tables)  # fmt: skip
    return {key: (totals, LatestRows()) for key, totals in result.items()}


def _overflowed(
    split: _Split, exposures: ExposureSource, kept_units: DataFrame, event_files: list[Path], kept_files: list[Path],
    steps: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment], state: st.LoadedState,
    options: JobOptions, tables: us.UnitTables,
) -> dict[str, tuple[Totals, LatestRows]]:  # fmt: skip
    """`_additive` when its 64-bit sums overflow: every unit with new rows recomputed from the
    lake (`_increment`, which sums in decimals when longs do not hold), the others' kept rows
    and every hash carried into one new layer."""
    changed = split.new.select("unit_id").where(F.col("unit_id").isNotNull())
    units = materialized(changed.unionByName(split.suspected).distinct())
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
    spark = exposures.spark
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
