"""Data-quality counts of the latest snapshot, one row per experiment (pure transforms).

Definitions (all after de-duplication by event_id, over rows with event time and receipt
<= as-of; "relevant" events are those whose name some computed metric uses):
- exposures / duplicate exposure rows: the experiment's exposures.
- units: analysed units (exposed to exactly one variant); the sum of the variants' units.
- multiple_variant_units: units exposed to more than one variant (left out of the analysis).
- events_without_exposure: relevant events at or after the experiment's first exposure
  from units never exposed to the experiment (a sign of broken exposure logging when the
  experiment covers all traffic).
- events_before_exposure (extra field): relevant events of exposed units at or after the
  experiment's first exposure but before the unit's own first exposure (they never count
  in a metric; within the lookback they feed the CUPED covariate).
- duplicate event rows: extra copies of relevant events of exposed units.
- used events: events counted in a metric (numerator or denominator, inside the window)
  for an analysed unit in the latest results. Of those, `late_events_included` were
  received more than the late threshold after their event time, and `late_after_freeze`
  have an event date whose daily snapshot was already frozen when they were received.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def _count_when(condition: F.Column) -> F.Column:
    """Rows where `condition` holds; never null in a grouped aggregation (a group has rows)."""
    return F.sum(F.when(condition, 1).otherwise(0))


def exposure_summary(exposures: DataFrame) -> DataFrame:
    """De-duplicated experiment exposures -> per experiment: exposures, duplicates, first_us,
    watermark_us, variants, and (when the exposures carry `consistent`) `conflicting`:
    exposures whose copies disagree."""
    checked = [_count_when(~F.col("consistent")).alias("conflicting")] if "consistent" in exposures.columns else []
    return exposures.groupBy("experiment").agg(
        F.count(F.lit(1)).alias("exposures"),
        F.sort_array(F.collect_set("variant")).alias("variants"),
        F.sum(F.col("copies") - 1).alias("duplicates"),
        F.min("ts_us").alias("first_us"),
        F.max("last_received_us").alias("watermark_us"),
        *checked,
    )


def unit_summary(segments: DataFrame) -> DataFrame:
    latest = segments.where(F.col("seg_end").isNull())
    return latest.groupBy("experiment").agg(
        _count_when(F.col("included")).alias("units"),
        _count_when(~F.col("included")).alias("multiple_variant_units"),
    )


def scoped_summary(scoped: DataFrame, starts: DataFrame) -> DataFrame:
    """Per experiment: `in_experiment`, its de-duplicated relevant events at or after its first
    exposure (exposed units or not), and their watermark_us. `scoped`: one row per
    (experiment, de-duplicated relevant event); `starts`: (experiment, start_us)."""
    in_experiment = F.col("ts_us") >= F.col("start_us")
    return (
        scoped.join(F.broadcast(starts), "experiment")
        .groupBy("experiment")
        .agg(
            _count_when(in_experiment).alias("in_experiment"),
            F.max("last_received_us").alias("watermark_us"),
        )
    )


def latest_event_summary(seg_events: DataFrame, starts: DataFrame, uses: DataFrame, timelines: DataFrame,
                         late_threshold_us: int) -> DataFrame:  # fmt: skip
    """(segment, event) rows of exposed units -> per experiment, over its latest snapshot's
    events (one row each: a unit has one latest segment): `exposed_in_experiment`,
    events_before_exposure, duplicates, and of the events counted in a metric for an analysed
    unit (see `transforms.event_uses`), late_events_included and late_after_freeze. One
    aggregation over the rows as they are (no join to the segments, no de-duplication)."""
    latest = (
        seg_events.where(F.col("seg_end").isNull())
        .join(F.broadcast(starts), "experiment")
        .join(F.broadcast(uses), ["experiment", "name"], "left")
        .join(F.broadcast(timelines.select("experiment", "frozen_days")), "experiment")
    )
    ts, first = F.col("ts_us"), F.col("first_us")
    in_experiment = ts >= F.col("start_us")
    in_window = F.coalesce(F.col("unbounded"), F.lit(False)) | (ts < first + F.col("window_us"))
    used = F.col("included") & (ts >= first) & F.coalesce(in_window, F.lit(False))
    late = (F.col("received_us") - ts) > late_threshold_us
    after_freeze = (F.col("k_time") < F.col("frozen_days")) & (F.col("k_received") > F.col("k_time"))
    return latest.groupBy("experiment").agg(
        _count_when(in_experiment).alias("exposed_in_experiment"),
        _count_when(in_experiment & (ts < first)).alias("events_before_exposure"),
        F.sum(F.col("copies") - 1).alias("duplicates"),
        _count_when(used & late).alias("late_events_included"),
        _count_when(used & after_freeze).alias("late_after_freeze"),
    )


def event_summary(scoped: DataFrame, latest: DataFrame) -> DataFrame:
    """`scoped_summary` and `latest_event_summary` -> per experiment: events_without_exposure
    (its events from its start less those of exposed units, so the scoped rows need no join
    to the segments), events_before_exposure, duplicates, watermark_us, late_events_included,
    late_after_freeze."""
    joined = scoped.join(latest, "experiment", "left")
    zero = F.lit(0)
    return joined.select(
        "experiment",
        (F.col("in_experiment") - F.coalesce(F.col("exposed_in_experiment"), zero)).alias("events_without_exposure"),
        *[F.coalesce(F.col(name), zero).alias(name) for name in (
            "events_before_exposure", "duplicates", "late_events_included", "late_after_freeze")],
        "watermark_us",
    )  # fmt: skip
