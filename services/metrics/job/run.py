"""One run of the job for one experiment: read -> transforms -> collect -> results document."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from services.common.catalog import Catalog, MetricDefinition, catalog_version
from services.common.results import DataQuality, ResultsDocument
from services.metrics.job import io
from services.metrics.job import transforms as tf
from services.metrics.job.document import (
    QUALITY_FIELDS,
    LatestRows,
    Snapshot,
    daily_entries,
    empty_snapshot,
    metric_entries,
    quantiles_of,
    slice_entries,
    slice_snapshots,
    variant_order,
    variant_units,
)
from services.metrics.job.latest import OVERALL
from services.metrics.job.timeline import DAY_US, HOUR_US, Timeline, date_of, format_micros
from services.metrics.records import EXPERIMENT_KEY

log = logging.getLogger("services.metrics.job")


@dataclass(frozen=True)
class ExperimentSpec:
    """What to compute: `variants` fixes the order (first = control); `metrics` None = all;
    `dimensions`: exposure attributes to slice the latest results by."""

    key: str
    variants: tuple[str, ...] = ()
    metrics: tuple[str, ...] | None = None
    dimensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The key names lake and results directories: never let it walk the file system.
        if not EXPERIMENT_KEY.match(self.key):
            raise ValueError(f"{self.key!r} is not an experiment key (lowercase letters, digits, '-', '_')")
        if len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError(f"dimensions must be distinct: {', '.join(self.dimensions)}")


@dataclass(frozen=True)
class JobOptions:
    as_of_us: int
    lateness_us: int = 72 * HOUR_US
    late_threshold_us: int = HOUR_US
    # The per-unit arithmetic of a full pass in numpy inside the Python workers (`unitmath`);
    # False: all of it as Spark frames (`transforms`). Both give the same digits.
    unit_arrays: bool = True
    # A rerun with at most this many new relevant event rows, and nothing that needs the
    # lake, runs on the driver (`localrerun`); 0: never.
    driver_rerun_events: int = 100_000


@dataclass
class Computation:
    """What the Spark side produced for one experiment."""

    metrics: list[MetricDefinition]
    missing_metrics: list[str]
    timeline: Timeline | None = None
    snapshots: list[Snapshot] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)
    variants_seen: set[str] = field(default_factory=set)
    latest: LatestRows = field(default_factory=LatestRows)


def load_exposures(spark: SparkSession, lake_dir: Path, key: str, options: JobOptions) -> DataFrame:
    files = io.exposure_files(lake_dir, key, date_of(options.as_of_us))
    raw = tf.with_micros(io.read_parquet(spark, files, io.EXPOSURE_DDL))
    return tf.first_received(tf.experiment_exposures(raw, key, options.as_of_us))


def load_events(spark: SparkSession, lake_dir: Path, metrics: Sequence[MetricDefinition], timeline: Timeline,
                options: JobOptions) -> DataFrame:  # fmt: skip
    lookback_days = max((tf.covariate_lookback_days(metric) for metric in metrics), default=0)
    files = io.event_files(lake_dir, timeline.day(0), lookback_days, date_of(options.as_of_us))
    names: set[str] = set().union(*(metric.event_names for metric in metrics))
    since_us = timeline.day0_us - lookback_days * DAY_US
    raw = tf.with_micros(io.read_parquet(spark, files, io.EVENT_DDL))
    return tf.first_received(tf.relevant_events(raw, names, since_us, options.as_of_us))


def compute(spark: SparkSession, lake_dir: Path, spec: ExperimentSpec, catalog: Catalog,
            options: JobOptions) -> Computation:  # fmt: skip
    """One experiment alone: a pass of its own (`batch.compute_pass` computes many at once)."""
    from services.metrics.job.batch import compute_pass  # batch builds on this module

    return compute_pass(spark, lake_dir, [spec], catalog, options).results[spec.key]


def data_quality(counts: dict[str, Any]) -> DataQuality:
    events = counts.get("events", {})
    watermarks = [w for w in (counts.get("watermark_us"), events.get("watermark_us")) if w is not None]
    values = {
        "exposures": counts.get("exposures", 0), "units": counts.get("units", 0),
        "duplicate_events": counts.get("duplicates", 0) + events.get("duplicates", 0),
        "multiple_variant_units": counts.get("multiple_variant_units", 0),
        "events_without_exposure": events.get("events_without_exposure", 0),
        "events_before_exposure": events.get("events_before_exposure", 0),
        "late_events_included": counts.get("late_events_included", 0),
        "late_after_freeze": counts.get("late_after_freeze", 0),
    }  # fmt: skip
    return DataQuality(
        **{name: int(values[name]) for name in QUALITY_FIELDS},
        watermark=format_micros(max(watermarks)) if watermarks else None,
    )


def build_document(spec: ExperimentSpec, result: Computation, options: JobOptions, computed_at: str) -> ResultsDocument:
    variants = variant_order(spec.variants, result.variants_seen)
    latest = result.snapshots[-1] if result.snapshots else empty_snapshot()
    latest = replace(latest, quantiles=quantiles_of(result.latest.quantiles, OVERALL, OVERALL))
    slices = slice_snapshots(result.latest, result.metrics)
    timeline = result.timeline
    return ResultsDocument(
        experiment=spec.key, computed_at=computed_at, as_of=format_micros(options.as_of_us),
        catalog_version=catalog_version(result.metrics),
        first_exposure_date=timeline.day(0) if timeline else None,
        allowed_lateness_hours=options.lateness_us / HOUR_US,
        late_threshold_hours=options.late_threshold_us / HOUR_US,
        missing_metrics=tuple(result.missing_metrics),
        data_quality=data_quality(result.quality),
        variants=variant_units(latest, variants),
        metrics=metric_entries(result.metrics, latest, variants),
        daily=daily_entries(timeline, result.snapshots, result.metrics, variants) if timeline else (),
        dimensions=spec.dimensions, slices=slice_entries(spec.dimensions, slices, result.metrics, variants),
    )  # fmt: skip


def run_experiment(
    spark: SparkSession, lake_dir: Path, results_dir: Path, spec: ExperimentSpec, catalog: Catalog,
    options: JobOptions,
) -> ResultsDocument:  # fmt: skip
    """Compute and publish one experiment's results; returns the published document."""
    started = time.monotonic()
    log.info("computing results", extra={"experiment": spec.key, "as_of": format_micros(options.as_of_us)})
    result = compute(spark, lake_dir, spec, catalog, options)
    computed_at = format_micros(time.time_ns() // 1000)
    document = build_document(spec, result, options, computed_at)
    path = io.publish(results_dir, document)
    log.info("results published", extra={
        "experiment": spec.key, "path": str(path), "seconds": round(time.monotonic() - started, 3),
        "data_quality": document.data_quality.model_dump(mode="json"),
    })  # fmt: skip
    return document
