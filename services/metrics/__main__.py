"""`python -m services.metrics [ingest]` | `python -m services.metrics run ...`.

ingest (the default)                 Kafka -> lake until SIGTERM; /healthz, /metrics on ASSAY_METRICS_PORT
run --experiment KEY [--as-of TS]    one experiment (its variants, metrics and dimensions from the
                                     registry when Redis answers; flags override; no Redis needed)
run --experiments k1,k2              several experiments (likewise)
run --all-running [--every SECONDS]  every running experiment in the registry (Redis), once or
                                     repeatedly until SIGTERM
run ... --full                       a full recompute (reruns are otherwise incremental where they
                                     can be: state under ASSAY_DATA_DIR/state)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from services.common.logs import configure_logging
from services.metrics.settings import MetricsSettings


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.metrics")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("ingest", help="consume the Kafka topics into the Parquet lake until SIGTERM")
    run = commands.add_parser("run", help="compute and publish per-variant sufficient statistics")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="one experiment key")
    which.add_argument("--experiments", help="comma-separated experiment keys")
    which.add_argument("--all-running", action="store_true", help="every running experiment in the registry")
    run.add_argument("--as-of", help="RFC 3339 instant (default: now)")
    run.add_argument("--metrics", help="comma-separated metric names (default: the experiment's, else all)")
    run.add_argument("--variants", help="comma-separated variant keys in order, control first")
    run.add_argument("--dimensions", help="comma-separated attributes to slice by (default: the experiment's)")
    run.add_argument(
        "--full",
        action="store_true",
        help="recompute from the whole lake, ignoring the state kept for incremental reruns",
    )
    run.add_argument("--every", type=float, help="repeat every SECONDS (one Spark session) until SIGTERM")
    args = parser.parse_args(argv)
    args.command = args.command or "ingest"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    settings = MetricsSettings()
    configure_logging(f"metrics-{args.command}", settings.log_level)
    if args.command == "ingest":
        from services.metrics.ingest import run_ingest

        run_ingest(settings)
        return 0
    from services.metrics.job.cli import run_command  # imports pyspark: only for `run`

    return run_command(args, settings)


if __name__ == "__main__":
    sys.exit(main())
