"""The lake rows a pass reads: each experiment's de-duplicated exposures, and the events any
of them can use, read and de-duplicated once (`EventSource`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from services.metrics.job import io
from services.metrics.job import transforms as tf
from services.metrics.job.plan import ExperimentPlan
from services.metrics.job.run import JobOptions
from services.metrics.job.timeline import date_of


def read_exposures(spark: SparkSession, files: Sequence[Path], keys: Sequence[str], as_of_us: int,
                   sliced: Sequence[str] = (), units: DataFrame | None = None) -> DataFrame:  # fmt: skip
    """De-duplicated exposures of these experiments in these files (`consistent`: every copy
    has the same unit, variant and time). With `units`, only theirs, picked before the
    de-duplication: exact only when every copy of each exposure has the same unit."""
    raw = tf.with_micros(io.read_parquet(spark, files, io.EXPOSURE_DDL))
    rows = tf.experiment_exposures(raw, keys, as_of_us, sliced).withColumn("content", F.struct(*EXPOSURE_CONTENT))
    if units is not None:
        rows = rows.join(F.broadcast(units), "unit_id", "left_semi")
    # Partitioned by the de-duplication's keys first, Spark sorts the rows once and aggregates
    # them in one step; otherwise it sorts them twice, once for a partial aggregation that
    # finds next to nothing (copies are rare) and again after the exchange.
    by_id = rows.repartition(shuffle_partitions(spark), "experiment", "event_id")
    return tf.first_received(by_id, check="content")


def exposure_listing(lake_dir: Path, keys: Sequence[str], options: JobOptions) -> list[Path]:
    """Every exposure file of these experiments (each from its own partitions) dated up to as-of."""
    return [path for key in keys for path in io.exposure_files(lake_dir, key, date_of(options.as_of_us))]


@dataclass
class ExposureSource:
    """The exposures of a pass. `frame`: all of them, de-duplicated (persisted when `cached`:
    the pass then computed their summary from it; otherwise planned only when first asked
    for, so a rerun that never reads them, see `localrerun`, does not list their files).

    `of_units` gives some units' exposures of some experiments; when the frame is not cached
    (a rerun that kept the summaries, see `batch.compute_pass`), it reads them from the files,
    picking the units before de-duplication, so only their rows are de-duplicated. That is
    exact for experiments whose exposure copies all agree (`conflicting` 0), which every
    incremental experiment's do."""

    spark: SparkSession
    files: list[Path]
    keys: list[str]
    as_of_us: int
    sliced: list[str]
    cached: bool
    _frame: DataFrame | None = None

    @classmethod
    def read(cls, spark: SparkSession, files: list[Path], keys: Sequence[str], as_of_us: int,
             sliced: Sequence[str], cache: bool) -> ExposureSource:  # fmt: skip
        source = cls(spark, files, list(keys), as_of_us, list(sliced), cache)
        if cache:
            source._frame = source.frame.persist()
        return source

    @property
    def frame(self) -> DataFrame:
        if self._frame is None:
            self._frame = read_exposures(self.spark, self.files, self.keys, self.as_of_us, self.sliced)
        return self._frame

    def of_units(self, keys: Sequence[str], units: DataFrame) -> DataFrame:
        if self.cached:
            return self.frame.where(F.col("experiment").isin(list(keys))).join(
                F.broadcast(units), "unit_id", "left_semi"
            )
        return read_exposures(self.spark, self.files, keys, self.as_of_us, units=units)

    def release(self) -> None:
        if self.cached and self._frame is not None:
            self._frame.unpersist()


EXPOSURE_CONTENT = ("unit_id", "variant", "ts_us")  # what every copy of one exposure should share


@dataclass
class EventSource:
    """The events of a pass, read and de-duplicated once (see `read_events`, `event_source`)."""

    distinct: DataFrame  # persisted: one row per event_id whose copies agree, by unit
    conflicting: DataFrame | None  # (experiment, event) rows of events whose copies disagree (`tf.conflicting_rows`)
    scopes: DataFrame  # experiment -> (name, since_us)
    cached: DataFrame | None  # what `event_source` persisted (`release` unpersists it)

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


def scopes_frame(spark: SparkSession, plans: Mapping[str, ExperimentPlan]) -> DataFrame:
    return tf.event_scopes(spark, {key: (plan.event_names, plan.since_us) for key, plan in plans.items()})


def event_source(relevant: DataFrame, plans: Mapping[str, ExperimentPlan]) -> EventSource:
    """Relevant event rows (with micros, no `experiment`) -> the pass's EventSource.

    Events whose copies disagree on name, time or unit (`tf.distinct_events`) are
    de-duplicated per experiment from their raw rows instead, as in a run of its own; a
    cheap check on the persisted frame skips that path when there are none."""
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
