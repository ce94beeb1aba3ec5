"""The `run` command: compute and publish results, once or on a schedule."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from dataclasses import asdict

from pyspark.sql import SparkSession

from services.common.catalog import Catalog, load_catalog
from services.metrics.job.batch import RunStats, run_experiments
from services.metrics.job.registry import registered_specs, running_experiments
from services.metrics.job.run import ExperimentSpec, JobOptions
from services.metrics.job.runlock import RunLockAbandoned, RunLockTimeout, lock_path, run_lock
from services.metrics.job.spark import build_session, wait_for_master
from services.metrics.job.status import SchedulerStatus, round_finished, round_started, write_status
from services.metrics.job.timeline import HOUR_US, parse_instant
from services.metrics.settings import MetricsSettings

log = logging.getLogger("services.metrics.job")


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def experiment_keys(args: argparse.Namespace) -> tuple[str, ...]:
    """The experiments named by `--experiment` / `--experiments`; ValueError for a malformed key."""
    keys = (args.experiment,) if args.experiment else _names(args.experiments) or ()
    for key in keys:
        ExperimentSpec(key)
    return keys


def experiment_specs(args: argparse.Namespace, settings: MetricsSettings) -> list[ExperimentSpec]:
    """What to compute this round; ValueError for a malformed experiment key.

    Named experiments take their variants, metrics and dimensions from the registry when it
    answers (as `--all-running` does); `--variants`, `--metrics` and `--dimensions` override
    them, and without a registry the flags are all there is (all catalog metrics, no slices)."""
    timeout_ms = max(settings.redis_timeout_ms, 2000)
    if args.all_running:
        return running_experiments(settings.redis_url, timeout_ms)
    keys = experiment_keys(args)  # a malformed key fails before the registry is asked about it
    registered = registered_specs(settings.redis_url, keys, timeout_ms)
    variants, metrics = _names(args.variants), _names(args.metrics)
    dimensions = _names(getattr(args, "dimensions", None))
    specs = []
    for key in keys:
        known = registered.get(key, ExperimentSpec(key))
        specs.append(ExperimentSpec(
            key,
            known.variants if variants is None else variants,
            known.metrics if metrics is None else metrics,
            known.dimensions if dimensions is None else dimensions,
        ))  # fmt: skip
    return specs


def job_options(args: argparse.Namespace, settings: MetricsSettings) -> JobOptions:
    as_of_us = parse_instant(args.as_of) if args.as_of else time.time_ns() // 1000
    return JobOptions(
        as_of_us=as_of_us, lateness_us=round(settings.metrics_allowed_lateness_hours * HOUR_US),
        late_threshold_us=round(settings.metrics_late_threshold_hours * HOUR_US),
    )  # fmt: skip


def run_round(
    args: argparse.Namespace, settings: MetricsSettings, catalog: Catalog, spark: SparkSession,
    stop: threading.Event | None = None,
) -> tuple[int, RunStats | None]:  # fmt: skip
    """One pass over the requested experiments (one Spark job for all of them); returns how
    many failed (others still publish) and the run's figures (experiments, partitions, files
    and rows read, seconds, full or incremental), also logged as "metrics run finished".

    The pass holds the data directory's run lock (`runlock`) from before it fixes its as-of
    until its state is kept; when another run holds it longer than the round timeout, or the
    scheduler is stopped while waiting, nothing is computed: one failure, no figures."""
    try:
        with run_lock(lock_path(settings.state_path), settings.scheduler_round_timeout_seconds, stop):
            options = job_options(args, settings)
            specs = experiment_specs(args, settings)
            _, failures, stats = run_experiments(
                spark, settings.lake_dir, settings.results_path, specs, catalog, options,
                state_dir=settings.state_path, force_full=getattr(args, "full", False),
            )  # fmt: skip
    except RunLockTimeout as exc:
        log.error("metrics run not started", extra={"error": str(exc)})
        return 1, None
    except RunLockAbandoned as exc:
        log.info("metrics run not started", extra={"reason": str(exc)})
        return 1, None
    return failures, stats


def scheduled_round(
    args: argparse.Namespace, settings: MetricsSettings, catalog: Catalog, spark: SparkSession,
    status: SchedulerStatus | None, stop: threading.Event | None = None,
) -> tuple[int, SchedulerStatus | None]:  # fmt: skip
    """`run_round`, recorded in the status file when running on a schedule."""
    path = settings.scheduler_status_path
    if status is not None:
        status = round_started(path, status, time.time())
    failures, stats = run_round(args, settings, catalog, spark, stop)
    if status is not None:
        status = round_finished(path, status, time.time(), failures, asdict(stats) if stats else None)
    return failures, status


def run_command(args: argparse.Namespace, settings: MetricsSettings, spark: SparkSession | None = None) -> int:
    """Compute and publish (once, or every `--every` seconds until SIGTERM); 1 when any failed,
    2 for bad arguments. A session passed in is used and left running; otherwise one is built
    from the settings and stopped."""
    if args.every is not None and (args.as_of or args.every <= 0):
        log.error("--every needs a positive number of seconds and cannot be combined with --as-of")
        return 2
    if not args.all_running:
        try:
            experiment_keys(args)  # the keys only: the registry is asked once, by the round
        except ValueError as exc:
            log.error("bad experiment key", extra={"error": str(exc)})
            return 2
    catalog = load_catalog(settings.metrics_catalog)
    stop = threading.Event()
    if args.every is not None:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    status = None
    if args.every is not None:
        status = write_status(settings.scheduler_status_path, SchedulerStatus(
            every_seconds=args.every, round_timeout_seconds=settings.scheduler_round_timeout_seconds,
            started_at=time.time(),
        ))  # fmt: skip
    if spark is None:
        wait_for_master(settings.spark_master)
    session = spark or build_session(
        settings.spark_master, shuffle_partitions=settings.spark_shuffle_partitions,
        driver_memory=settings.spark_driver_memory, cores_max=settings.spark_cores_max,
        log_level=settings.spark_log_level, page_size=settings.spark_page_size,
    )  # fmt: skip
    try:
        failures, status = scheduled_round(args, settings, catalog, session, status, stop)
        while args.every is not None and not stop.wait(args.every):
            failures, status = scheduled_round(args, settings, catalog, session, status, stop)
    finally:
        if spark is None:
            session.stop()
    return 1 if failures else 0
