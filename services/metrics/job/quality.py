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
    return F.sum(F.when(condition, 1).otherwise(0))


def exposure_summary(exposures: DataFrame) -> DataFrame:
    """De-duplicated experiment exposures -> per experiment: exposures, duplicates, first_us,
    watermark_us, variants, and (when the exposures carry `consistent`) `conflicting`:
    exposures whose copies disagree."""
    checked = [_count_when(~F.col("consistent")).alias("conflicting")] if "consistent" in exposures.columns else []
    return exposures.groupBy("experiment").agg(
        F.count(F.lit(1)).alias("exposures"),
        F.sort_array(F.collect_set("variant")).alias("variants"),
        F.coalesce(F.sum(F.col("copies") - 1), F.lit(0)).alias("duplicates"),
        F.min("ts_us").alias("first_us"),
        F.max("last_received_us").alias("watermark_us"),
        *checked,
    )


def unit_summary(segments: DataFrame) -> DataFrame:
    latest = segments.where(F.col("seg_end").isNull())
    return latest.groupBy("experiment").agg(
        F.coalesce(_count_when(F.col("included")), F.lit(0)).alias("units"),
        F.coalesce(_count_when(~F.col("included")), F.lit(0)).alias("multiple_variant_units"),
    )


def event_summary(scoped: DataFrame, exposed: DataFrame, starts: DataFrame) -> DataFrame:
    """Per experiment: events_without_exposure, events_before_exposure, duplicates,
    watermark_us. `scoped`: one row per (experiment, de-duplicated relevant event); `exposed`:
    (segment, event) rows of exposed units, every one of the latest segments'; `starts`:
    (experiment, start_us), the experiment's first exposure. Events without exposure are the
    experiment's events from its start less those of exposed units, so the scoped rows need no
    join to the segments."""
    in_experiment = F.col("ts_us") >= F.col("start_us")
    totals = (
        scoped.join(F.broadcast(starts), "experiment")
        .groupBy("experiment")
        .agg(
            F.coalesce(_count_when(in_experiment), F.lit(0)).alias("in_experiment"),
            F.max("last_received_us").alias("watermark_us"),
        )
    )
    latest = exposed.where(F.col("seg_end").isNull()).join(F.broadcast(starts), "experiment")
    before = in_experiment & (F.col("ts_us") < F.col("first_us"))
    seen = latest.groupBy("experiment").agg(
        F.coalesce(_count_when(in_experiment), F.lit(0)).alias("exposed_in_experiment"),
        F.coalesce(_count_when(before), F.lit(0)).alias("events_before_exposure"),
        F.coalesce(F.sum(F.col("copies") - 1), F.lit(0)).alias("duplicates"),
    )
    joined = totals.join(seen, "experiment", "left")
    return joined.select(
        "experiment",
        (F.col("in_experiment") - F.coalesce(F.col("exposed_in_experiment"), F.lit(0))).alias(
            "events_without_exposure"
        ),
        F.coalesce(F.col("events_before_exposure"), F.lit(0)).alias("events_before_exposure"),
        F.coalesce(F.col("duplicates"), F.lit(0)).alias("duplicates"),
        "watermark_us",
    )


def used_event_summary(classified: DataFrame, timelines: DataFrame, late_threshold_us: int) -> DataFrame:
    """Classified event rows -> per experiment: late_events_included, late_after_freeze
    (distinct events); `timelines` gives each experiment's `frozen_days`."""
    used = classified.where(F.col("seg_end").isNull() & F.col("included") & F.col("post"))
    events = used.select("experiment", "unit_id", "event_id", "ts_us", "received_us", "k_time", "k_received")
    events = events.dropDuplicates(["experiment", "unit_id", "event_id"]).join(
        F.broadcast(timelines.select("experiment", "frozen_days")), "experiment"
    )
    late = (F.col("received_us") - F.col("ts_us")) > late_threshold_us
    after_freeze = (F.col("k_time") < F.col("frozen_days")) & (F.col("k_received") > F.col("k_time"))
    return events.groupBy("experiment").agg(
        F.coalesce(_count_when(late), F.lit(0)).alias("late_events_included"),
        F.coalesce(_count_when(after_freeze), F.lit(0)).alias("late_after_freeze"),
    )
