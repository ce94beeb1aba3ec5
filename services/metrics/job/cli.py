"""The `run` command: compute and publish results, once or on a schedule."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

from pyspark.sql import SparkSession

from services.metrics.catalog import Catalog, load_catalog
from services.metrics.job.registry import running_experiments
from services.metrics.job.run import ExperimentSpec, JobOptions, run_experiment
from services.metrics.job.spark import build_session
from services.metrics.job.timeline import HOUR_US, parse_instant
from services.metrics.settings import MetricsSettings

log = logging.getLogger("services.metrics.job")


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def experiment_specs(args: argparse.Namespace, settings: MetricsSettings) -> list[ExperimentSpec]:
    """What to compute this round; ValueError for a malformed experiment key."""
    if args.all_running:
        return running_experiments(settings.redis_url, max(settings.redis_timeout_ms, 2000))
    keys = (args.experiment,) if args.experiment else _names(args.experiments) or ()
    variants, metrics = _names(args.variants) or (), _names(args.metrics)
    return [ExperimentSpec(key, variants, metrics) for key in keys]


def job_options(args: argparse.Namespace, settings: MetricsSettings) -> JobOptions:
    as_of_us = parse_instant(args.as_of) if args.as_of else time.time_ns() // 1000
    return JobOptions(
        as_of_us=as_of_us, lateness_us=round(settings.metrics_allowed_lateness_hours * HOUR_US),
        late_threshold_us=round(settings.metrics_late_threshold_hours * HOUR_US),
    )  # fmt: skip


def run_round(
    args: argparse.Namespace, settings: MetricsSettings, catalog: Catalog, spark: SparkSession
) -> int:
    """One pass over the requested experiments; returns how many failed (others still publish)."""
    options, failures = job_options(args, settings), 0
    for spec in experiment_specs(args, settings):
        try:
            run_experiment(spark, settings.lake_dir, settings.results_path, spec, catalog, options)
        except Exception:
            failures += 1
            log.exception("metrics job failed", extra={"experiment": spec.key})
    return failures


def run_command(
    args: argparse.Namespace, settings: MetricsSettings, spark: SparkSession | None = None
) -> int:
    """Compute and publish (once, or every `--every` seconds until SIGTERM); 1 when any failed,
    2 for bad arguments. A session passed in is used and left running; otherwise one is built
    from the settings and stopped."""
    if args.every is not None and (args.as_of or args.every <= 0):
        log.error("--every needs a positive number of seconds and cannot be combined with --as-of")
        return 2
    if not args.all_running:
        try:
            experiment_specs(args, settings)
        except ValueError as exc:
            log.error("bad experiment key", extra={"error": str(exc)})
            return 2
    catalog = load_catalog(settings.metrics_catalog)
    stop = threading.Event()
    if args.every is not None:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    session = spark or build_session(
        settings.spark_master, shuffle_partitions=settings.spark_shuffle_partitions,
        driver_memory=settings.spark_driver_memory,
    )  # fmt: skip
    try:
        failures = run_round(args, settings, catalog, session)
        while args.every is not None and not stop.wait(args.every):
            failures = run_round(args, settings, catalog, session)
    finally:
        if spark is None:
            session.stop()
    return 1 if failures else 0
