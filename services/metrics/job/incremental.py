"""Incremental reruns: what the job keeps per experiment, and which units a rerun recomputes.

Every number the additive part of a results document holds (the per-day statistics of each
(metric, variant), the analysed units, the data-quality counts) is a sum over units of what
each unit contributes, and a unit's contribution depends only on its own rows (its exposures,
its de-duplicated relevant events) and on the experiment's timeline. So when a rerun finds
new lake files:

    totals(now) = totals(kept) - contribution(affected units, as the kept run saw them)
                               + contribution(affected units, as they are now)

where the affected units are those with any row in a new file, or with a row the kept run's
as-of left out (event time or receipt after it). Units that are not affected have exactly
the rows they had, so their contribution is what the kept totals already hold. "As the kept
run saw them" is recomputed, not stored: the same transforms over the kept run's files at
its as-of, restricted to the affected units, give exactly what they contributed then. The
state is therefore small (the totals, a few hundred rows per experiment), and both views of
the affected units go through the same code as a full run.

With the per-unit state (`unitstate`), most affected units skip both recomputations: a unit
whose new rows are only events it never had takes "then" from its kept per-unit rows and "now"
from the same rows plus the new events' increments, so no old event is read again.

Exactness conditions, each checked, each sending the experiment back to a full recompute
(`batch.compute_pass` logs and counts why):
- the timeline is the kept one (same first exposure, latest day and frozen days): a row's
  entry index depends on it;
- every copy of every relevant event and exposure agrees on its content (de-duplication then
  never moves a row from one unit to another);
- no dimensions and no quantile metrics (slices and quantiles are not sums over units);
- plus `state.plan_run`'s checks: same state version, lateness, threshold and metric
  definitions, an as-of not earlier than the kept one, no kept lake file changed or vanished.
Sums are fixed-point decimals, so subtracting and adding gives the digits of a full run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from services.metrics.job import io
from services.metrics.job import transforms as tf
from services.metrics.job.timeline import Timeline

TOTALS_FILE = "totals.json"
# Data-quality counts that are sums over units (the rest come from the exposure summary,
# which every run computes in full, or are the events' watermark, a max).
UNIT_COUNTS = ("units", "multiple_variant_units", "late_events_included", "late_after_freeze")
EVENT_COUNTS = ("events_without_exposure", "events_before_exposure", "duplicates")
StatKey = tuple[str, str, int]  # (metric, variant, c)


def timeline_key(timeline: Timeline, start_us: int) -> list[int]:
    """What of the experiment's timeline a unit's contribution depends on: as-of itself only
    filters rows, but the first exposure (`start_us`) bounds "events without exposure" and
    "events before exposure"."""
    return [timeline.day0_us, timeline.days, timeline.frozen_days, timeline.lateness_us, start_us]


@dataclass
class Totals:
    """One experiment's additive results: per-snapshot changes summed over units."""

    stats: dict[StatKey, tuple[Decimal, ...]] = field(default_factory=dict)  # SUMS, in order
    units: dict[tuple[str, int], int] = field(default_factory=dict)  # (variant, c) -> units
    counts: dict[str, int] = field(default_factory=dict)  # UNIT_COUNTS and EVENT_COUNTS
    watermark_us: int | None = None  # latest receipt of a relevant event

    @classmethod
    def collected(cls, deltas: Iterable[Mapping[str, Any]], unit_deltas: Iterable[Mapping[str, Any]],
                  quality: Mapping[str, Any] | None) -> Totals:  # fmt: skip
        """From the rows a pass collects (`contribution_deltas`, `unit_count_deltas`) and its
        data-quality counts (`aggregate.quality_counts`' shape)."""
        totals = cls()
        for row in deltas:
            key = (row["metric"], row["variant"], int(row["c"]))
            totals.stats[key] = _add(totals.stats.get(key), tuple(Decimal(row[n]) for n in tf.SUMS))
        for row in unit_deltas:
            step = (row["variant"], int(row["c"]))
            totals.units[step] = totals.units.get(step, 0) + int(row["units"])
        quality = quality or {}
        events = quality.get("events") or {}
        totals.counts = {name: int(quality.get(name) or 0) for name in UNIT_COUNTS}
        totals.counts.update({name: int(events.get(name) or 0) for name in EVENT_COUNTS})
        totals.watermark_us = events.get("watermark_us")
        return totals

    def metric_rows(self) -> list[dict[str, Any]]:
        """Rows as `document.accumulate` reads them."""
        return [{"metric": m, "variant": v, "c": c, **dict(zip(tf.SUMS, values, strict=True))}
                for (m, v, c), values in sorted(self.stats.items())]  # fmt: skip

    def unit_rows(self) -> list[dict[str, Any]]:
        return [{"variant": v, "c": c, "units": n} for (v, c), n in sorted(self.units.items())]

    def quality(self) -> dict[str, Any]:
        """The data-quality counts in `aggregate.quality_counts`' shape."""
        events: dict[str, Any] = {name: self.counts.get(name, 0) for name in EVENT_COUNTS}
        events["watermark_us"] = self.watermark_us
        return {**{name: self.counts.get(name, 0) for name in UNIT_COUNTS}, "events": events}

    def updated(self, now: Totals, then: Totals) -> Totals:
        """These totals with the affected units' contribution `then` replaced by `now`.
        Entries that come to zero are dropped (the document reads a missing one as zero)."""
        stats = dict(self.stats)
        for key, values in now.stats.items():
            stats[key] = _add(stats.get(key), values)
        for key, values in then.stats.items():
            stats[key] = _add(stats.get(key), tuple(-v for v in values))
        units = dict(self.units)
        for step, count in now.units.items():
            units[step] = units.get(step, 0) + count
        for step, count in then.units.items():
            units[step] = units.get(step, 0) - count
        counts = {name: self.counts.get(name, 0) + now.counts.get(name, 0) - then.counts.get(name, 0)
                  for name in (*UNIT_COUNTS, *EVENT_COUNTS)}  # fmt: skip
        # A unit's latest receipt never goes down as rows arrive, so the max stays exact.
        marks = [w for w in (self.watermark_us, now.watermark_us) if w is not None]
        return Totals(
            {key: values for key, values in stats.items() if any(values)},
            {step: count for step, count in units.items() if count},
            counts,
            max(marks) if marks else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "stats": [[m, v, c, *[str(x) for x in values]] for (m, v, c), values in sorted(self.stats.items())],
            "units": [[v, c, n] for (v, c), n in sorted(self.units.items())],
            "counts": self.counts,
            "watermark_us": self.watermark_us,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Totals:
        """Raises ValueError, TypeError or KeyError on anything malformed (then the state is
        unusable and the run is full)."""
        stats: dict[StatKey, tuple[Decimal, ...]] = {}
        for row in data["stats"]:
            metric, variant, c, *values = row
            if len(values) != len(tf.SUMS):
                raise ValueError(f"a stats row has {len(values)} sums, not {len(tf.SUMS)}")
            stats[(str(metric), str(variant), _integer(c))] = tuple(Decimal(str(v)) for v in values)
        units = {(str(v), _integer(c)): _integer(n) for v, c, n in data["units"]}
        counts = {str(name): _integer(value) for name, value in dict(data["counts"]).items()}
        watermark = data["watermark_us"]
        return cls(stats, units, counts, None if watermark is None else _integer(watermark))


@dataclass(frozen=True)
class KeptExperiment:
    """What the state holds for one experiment besides `state.ExperimentState`."""

    timeline: list[int]
    totals: Totals
    # The pass's exposure summary (`quality.exposure_summary`): a rerun whose exposure files
    # are the kept run's takes it instead of reading every exposure (`batch.compute_pass`).
    exposures: dict[str, Any] | None = None


def write_totals(path: Path, kept: Mapping[str, KeptExperiment]) -> None:
    data = {key: {"timeline": entry.timeline, "totals": entry.totals.to_json(), "exposures": entry.exposures}
            for key, entry in kept.items()}  # fmt: skip
    path.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")


def read_totals(path: Path) -> dict[str, KeptExperiment]:
    """The kept totals; ValueError (or OSError) when they cannot be used."""
    try:
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict):
            raise ValueError("the totals are not an object")
        return {
            str(key): KeptExperiment([_integer(v) for v in entry["timeline"]], Totals.from_json(entry["totals"]),
                                     _exposure_summary(entry.get("exposures")))
            for key, entry in data.items()
        }  # fmt: skip
    except (KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        raise ValueError(f"malformed totals: {type(exc).__name__}: {exc}") from exc


SUMMARY_COUNTS = ("exposures", "duplicates", "first_us", "conflicting")


def _exposure_summary(data: Any) -> dict[str, Any] | None:
    """A kept exposure summary, checked field by field (TypeError or ValueError otherwise)."""
    if data is None:
        return None
    summary: dict[str, Any] = {name: _integer(data[name]) for name in SUMMARY_COUNTS}
    watermark = data["watermark_us"]
    summary["watermark_us"] = None if watermark is None else _integer(watermark)
    variants = data["variants"]
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        raise ValueError("the kept variants are not a list of strings")
    summary["variants"] = list(variants)
    return summary


def changed_exposures(spark: SparkSession, keys: Sequence[str], added: Sequence[Path], kept_files: Sequence[Path],
                      kept_as_of_us: int, as_of_us: int) -> DataFrame:  # fmt: skip
    """The exposure rows of these experiments the kept run did not read (see `_changed`)."""
    frame = _changed(spark, [path for path in added if io.is_exposure_file(path)],
                     [path for path in kept_files if io.is_exposure_file(path)], io.EXPOSURE_DDL,
                     kept_as_of_us, as_of_us)  # fmt: skip
    return frame.where(F.col("experiment").isin(list(keys)))


def changed_events(spark: SparkSession, names: Iterable[str], added: Sequence[Path], kept_files: Sequence[Path],
                   kept_as_of_us: int, as_of_us: int) -> DataFrame:  # fmt: skip
    """The event rows with one of these names the kept run did not read (see `_changed`)."""
    frame = _changed(spark, [path for path in added if not io.is_exposure_file(path)],
                     [path for path in kept_files if not io.is_exposure_file(path)], io.EVENT_DDL,
                     kept_as_of_us, as_of_us)  # fmt: skip
    return frame.where(F.col("name").isin(sorted(set(names))))


def _changed(spark: SparkSession, added: Sequence[Path], kept_files: Sequence[Path], ddl: str, kept_as_of_us: int,
             as_of_us: int) -> DataFrame:  # fmt: skip
    """Rows, with micros, in an added file or in a kept file with an event time or receipt
    after the kept as-of (and by the new one). Kept files whose Parquet statistics say that
    no row is that late are not read."""
    frame = tf.with_micros(io.read_parquet(spark, added, ddl))
    if as_of_us <= kept_as_of_us:
        return frame
    later = [path for path in kept_files if (io.latest_instant_us(path) or as_of_us) > kept_as_of_us]
    if not later:
        return frame
    newer = ((F.col("ts_us") > kept_as_of_us) | (F.col("received_us") > kept_as_of_us)) & (
        (F.col("ts_us") <= as_of_us) & (F.col("received_us") <= as_of_us)
    )
    return frame.unionByName(tf.with_micros(io.read_parquet(spark, later, ddl)).where(newer))


def changed_rows(exposures: DataFrame, events: DataFrame) -> DataFrame:
    """`changed_exposures` and `changed_events` -> (unit_id, event_id) of the rows the kept run did not read;
    `event_id` is null for exposures. Their units are the affected ones. A superset is
    harmless (those units' contribution is recomputed twice and cancels); a missing unit
    would not be."""
    no_id = F.lit(None).cast("string").alias("event_id")
    return exposures.select("unit_id", no_id).unionByName(events.select("unit_id", "event_id")).distinct()


def _add(left: tuple[Decimal, ...] | None, right: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
    return right if left is None else tuple(a + b for a, b in zip(left, right, strict=True))


def _integer(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value
