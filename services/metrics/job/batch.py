"""One pass for many experiments: read -> transforms -> collect -> one results document each.

The lake's exposure partitions of every requested experiment are read once, and so are the
event partitions any of them can use (`sources`); the events are de-duplicated once per
event_id (copies that disagree on name, time or unit are the exception: those are
de-duplicated per experiment, as a run of its own would), joined once by unit to the exposure
segments of all of them, and aggregated once (`aggregate`). What differs between experiments
(metrics, windows, CUPED lookback, variants, and each one's timeline: day 0 = its first
exposure, latest day, frozen days) is data in the plan. The driver makes two rounds of
collects whatever the number of experiments: the exposure summary (which fixes each
timeline), then the deltas, unit deltas and quality counts, plus, when any experiment has
dimensions or quantile metrics, the latest slices and quantile blocks of all of them (see
`latest`). Each experiment's numbers are exactly those of a run of its own.

With a state directory, a rerun computes what it can incrementally (`rerun`), and the run
keeps the pass's state once its documents are published (`run_experiments`).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from services.common.catalog import Catalog
from services.metrics.job import incremental, io, quality
from services.metrics.job import state as st
from services.metrics.job import unitstate as us
from services.metrics.job.aggregate import collected
from services.metrics.job.document import accumulate
from services.metrics.job.incremental import KeptExperiment
from services.metrics.job.plan import ExperimentPlan, Pass
from services.metrics.job.rerun import pass_statistics
from services.metrics.job.run import Computation, ExperimentSpec, JobOptions, build_document, data_quality
from services.metrics.job.sources import ExposureSource, event_listing, exposure_listing
from services.metrics.job.timeline import Timeline, format_micros

log = logging.getLogger("services.metrics.job")


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


def _loggable(block: Any) -> Any:
    """The data-quality block as JSON types (a dict, or a pydantic model's dump)."""
    return block.model_dump(mode="json") if hasattr(block, "model_dump") else block


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
    files = exposure_listing(lake_dir, keys, options)
    reused = _kept_summaries(lake_dir, files, keys, state, options) if not force_full else None
    exposures = ExposureSource.read(spark, files, keys, options.as_of_us, sliced, cache=reused is None)
    outcome = Pass(results, list(files))  # the event files join them below
    try:
        if reused is None:
            summaries = {row.pop("experiment"): row for row in collected(quality.exposure_summary(exposures.frame))}
        else:
            summaries = reused
            log.info("exposure files unchanged since the kept run: its exposure summaries stand")
        kept_summaries = copy.deepcopy(summaries)
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
            outcome.files += event_files
            outcome.manifest = st.stamp_files(lake_dir, outcome.files)
            outcome.experiments = {key: _experiment_state(plan) for key, plan in plans.items()}
            kept = _plan_modes(outcome, plans, conflicting, state, options, force_full)
            statistics = pass_statistics(outcome, lake_dir, exposures, event_files, plans, kept, state, options, tables)
            for key, (totals, latest) in statistics.items():
                plan = plans[key]
                results[key].snapshots = accumulate(totals.metric_rows(), totals.unit_rows(), plan.timeline.days)
                results[key].quality = {**summaries[key], **totals.quality()}
                results[key].latest = latest
                outcome.kept[key] = KeptExperiment(incremental.timeline_key(plan.timeline, plan.start_us), totals,
                                                   kept_summaries[key])  # fmt: skip
    finally:
        exposures.release()
    return outcome


def _kept_summaries(lake_dir: Path, files: Sequence[Path], keys: Sequence[str],
                    state: st.LoadedState | st.Unusable | None, options: JobOptions
                    ) -> dict[str, Any] | None:  # fmt: skip
    """The kept run's exposure summaries when they are this pass's too: these experiments'
    exposure files are the kept run's (names, sizes and times), and when as-of moved on, none
    of their rows has an event time or receipt after the kept as-of (their Parquet statistics
    say so), so the same rows pass the as-of filter. None otherwise (or when any experiment
    has none kept): the pass then summarises every exposure itself."""
    if not isinstance(state, st.LoadedState) or options.as_of_us < state.meta.as_of_us:
        return None
    folders = {f"experiment={key}" for key in keys}
    kept_files = {name: stamp for name, stamp in state.manifest.items() if PurePosixPath(name).parent.name in folders}
    if st.stamp_files(lake_dir, files) != kept_files:
        return None
    if options.as_of_us > state.meta.as_of_us:
        latest = [io.latest_instant_us(path) for path in files]
        if any(value is None or value > state.meta.as_of_us for value in latest):
            return None
    try:
        kept = incremental.read_totals(state.directory / incremental.TOTALS_FILE)
    except (OSError, ValueError):
        return None
    summaries = {key: kept[key].exposures for key in keys if key in kept}
    if any(summary is None for summary in summaries.values()) or len(summaries) != len(keys):
        return None
    return summaries


def _experiment_state(plan: ExperimentPlan) -> st.ExperimentState:
    return st.ExperimentState(
        metrics={metric.name: metric.definition_hash for metric in plan.metrics},
        dimensions=plan.dimensions, day0_us=plan.timeline.day0_us,
    )  # fmt: skip


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
            outcome.all_full(f"kept totals unusable: {exc}"[:300])
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
