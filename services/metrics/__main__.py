"""`python -m services.metrics ingest` | `python -m services.metrics run ...`.

run --experiment KEY [--as-of TS]     one experiment (no Redis needed)
run --experiments k1,k2               several experiments (no Redis needed)
run --all-running                     every running experiment in the registry (Redis)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from services.common.logs import configure_logging
from services.metrics.settings import MetricsSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("services.metrics")


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(name.strip() for name in text.split(",") if name.strip())


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.metrics")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ingest", help="consume the Kafka topics into the Parquet lake until SIGTERM")
    run = commands.add_parser("run", help="compute and publish per-variant sufficient statistics")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="one experiment key")
    which.add_argument("--experiments", help="comma-separated experiment keys")
    which.add_argument("--all-running", action="store_true", help="every running experiment in the registry")
    run.add_argument("--as-of", help="RFC 3339 instant (default: now)")
    run.add_argument("--metrics", help="comma-separated metric names (default: all catalog metrics)")
    run.add_argument("--variants", help="comma-separated variant keys in order, control first")
    return parser.parse_args(argv)


def run_command(
    args: argparse.Namespace, settings: MetricsSettings, spark: SparkSession | None = None
) -> int:
    """Compute and publish every requested experiment; 1 when any failed. A session passed in
    is used and left running; otherwise one is built from the settings and stopped."""
    from services.metrics.catalog import load_catalog
    from services.metrics.job.registry import running_experiments
    from services.metrics.job.run import ExperimentSpec, JobOptions, run_experiment
    from services.metrics.job.spark import build_session
    from services.metrics.job.timeline import HOUR_US, parse_instant

    catalog = load_catalog(settings.metrics_catalog)
    if args.all_running:
        specs = running_experiments(settings.redis_url, max(settings.redis_timeout_ms, 2000))
    else:
        keys = (args.experiment,) if args.experiment else _names(args.experiments) or ()
        variants, metrics = _names(args.variants) or (), _names(args.metrics)
        try:
            specs = [ExperimentSpec(key, variants, metrics) for key in keys]
        except ValueError as exc:
            log.error("bad experiment key", extra={"error": str(exc)})
            return 2
    as_of_us = parse_instant(args.as_of) if args.as_of else time.time_ns() // 1000
    options = JobOptions(
        as_of_us=as_of_us, lateness_us=round(settings.metrics_allowed_lateness_hours * HOUR_US),
        late_threshold_us=round(settings.metrics_late_threshold_hours * HOUR_US),
    )  # fmt: skip
    session = spark or build_session(
        settings.spark_master, shuffle_partitions=settings.spark_shuffle_partitions,
        driver_memory=settings.spark_driver_memory,
    )  # fmt: skip
    failures = 0
    try:
        for spec in specs:
            try:
                run_experiment(session, settings.lake_dir, settings.results_dir, spec, catalog, options)
            except Exception:
                failures += 1
                log.exception("metrics job failed", extra={"experiment": spec.key})
    finally:
        if spark is None:
            session.stop()
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = MetricsSettings()
    configure_logging(f"metrics-{args.command}", settings.log_level)
    if args.command == "ingest":
        from services.metrics.ingest import run_ingest

        run_ingest(settings)
        return 0
    return run_command(args, settings)


if __name__ == "__main__":
    sys.exit(main())
