"""Incremental reruns publish exactly what a full recompute publishes, after every batch.

The lake grows batch by batch the way ingest grows it: records land in later batches than
their receipt says (late arrival in the lake), SDK retries re-send events already in the lake,
late exposures move a unit's first exposure (some to the other variant), and as-of moves on
within the day. After every batch a run that starts from the kept state must publish, for
every experiment, the document a from-scratch run publishes (bar `computed_at`), and say
which experiments it computed incrementally. Whatever makes the state unusable or the
increment inexact sends the experiment back to a full recompute, with the reason.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from pyspark.sql import SparkSession

from services.common.catalog import Catalog, parse_catalog
from services.metrics.job import state as st
from services.metrics.job.batch import RunStats, run_experiments
from services.metrics.job.incremental import TOTALS_FILE
from services.metrics.job.run import ExperimentSpec, JobOptions
from services.metrics.job.timeline import HOUR_US, parse_instant
from tests.generator import generate, rfc3339
from tests.unit.metrics.helpers import CATALOG_TEXT, with_attributes, write_lake

CATALOG = parse_catalog(CATALOG_TEXT)
# The conversion window changed: a new definition of one metric.
CHANGED = parse_catalog(CATALOG_TEXT.replace("window_hours: 36", "window_hours: 48"))
SPECS = (
    ExperimentSpec("inc-a", ("control", "treatment"), ("conversion", "revenue", "revenue_per_session", "sessions")),
    ExperimentSpec("inc-b", ("treatment", "control"), ("latency_ms", "error_rate", "conversion")),
    # Slices and a quantile metric: recomputed in full every time, and still right.
    ExperimentSpec("inc-c", ("control", "treatment"), ("sessions", "latency_p90"), dimensions=("device",)),
)
STARTS = {"inc-a": datetime(2026, 10, 1, tzinfo=UTC), "inc-b": datetime(2026, 10, 3, tzinfo=UTC),
          "inc-c": datetime(2026, 9, 30, tzinfo=UTC)}  # fmt: skip
DAY = datetime(2026, 10, 10, tzinfo=UTC)  # as-of moves on within this day: the timelines hold
Record = dict[str, Any]


def records(seed: int) -> tuple[list[Record], list[Record]]:
    exposures, events = [], []
    for offset, (key, start) in enumerate(STARTS.items()):
        data = generate(seed=seed + offset, units=50, days=6, experiment=key, start=start)
        exposures += with_attributes(data.exposures, seed + offset)
        events += data.events
    return exposures, events


def batches(seed: int, count: int) -> list[tuple[list[Record], list[Record]]]:
    """The records in `count` batches: most in the first, the rest anywhere (so rows arrive in
    the lake after rows received later), plus re-sent copies and late exposures that move a
    unit's first exposure, in the later batches."""
    rng = random.Random(seed)
    exposures, events = records(seed)
    split: list[tuple[list[Record], list[Record]]] = [([], []) for _ in range(count)]
    weights = [3] + [1] * (count - 1)
    # Each experiment's first exposure is in the first batch: one that arrives later moves
    # the experiment's start, which is a full recompute (tested on its own).
    first = {key: min(r["timestamp"] for r in exposures if r["experiment"] == key) for key in STARTS}
    for record in exposures:
        earliest = record["timestamp"] == first.get(record["experiment"])
        chosen = 0 if earliest else rng.choices(range(count), weights)[0]
        split[chosen][0].append(record)
    for record in events:
        split[rng.choices(range(count), weights)[0]][1].append(record)
    for index in range(1, count):
        for record in rng.sample(events, 15):  # an SDK retry, received again later
            received = datetime.fromisoformat(record["received_at"]) + timedelta(minutes=rng.randint(1, 90))
            split[index][1].append({**record, "received_at": rfc3339(min(received, DAY))})
        for record in rng.sample(exposures, 4):  # a late exposure, an hour before the unit's
            moment = datetime.fromisoformat(record["timestamp"]) - timedelta(hours=1)
            if record["experiment"] not in first or rfc3339(moment) <= first[record["experiment"]]:
                continue  # would move the experiment's first exposure
            variant = rng.choice(["control", "treatment"])
            late = {**record, "event_id": f"late-{seed}-{index}-{record['event_id']}", "variant": variant,
                    "timestamp": rfc3339(moment), "received_at": rfc3339(DAY - timedelta(hours=3))}  # fmt: skip
            split[index][0].append(late)
    return split


def published(results_dir: Path, key: str) -> dict[str, Any]:
    document = json.loads((results_dir / key / "latest.json").read_text())
    document.pop("computed_at")
    return dict(document)


def options_at(hour: int) -> JobOptions:
    return JobOptions(parse_instant(rfc3339(DAY + timedelta(hours=hour))), 72 * HOUR_US, HOUR_US)


class Lake:
    """A lake that grows batch by batch, with a state directory and a results directory."""

    def add(self, exposures: Sequence[Record], events: Sequence[Record]) -> None:
        self.offset += write_lake(self.dir, exposures, events, first_offset=self.offset) + 1

    def __init__(self, root: Path, specs: Sequence[ExperimentSpec] = SPECS) -> None:
        self.dir, self.state, self.results = root / "lake", root / "state", root / "results"
        self.offset = 0
        self.scratch = root / "scratch"
        self.specs = specs

    def rerun(self, spark: SparkSession, options: JobOptions, catalog: Catalog = CATALOG,
              force_full: bool = False) -> RunStats:  # fmt: skip
        _, failures, stats = run_experiments(spark, self.dir, self.results, self.specs, catalog, options,
                                             state_dir=self.state, force_full=force_full)  # fmt: skip
        assert failures == 0
        return stats

    def assert_equals_full(self, spark: SparkSession, options: JobOptions, catalog: Catalog = CATALOG) -> None:
        """A from-scratch run (no state) publishes what the rerun published."""
        scratch = self.scratch / f"{self.offset}-{options.as_of_us}"
        _, failures, _ = run_experiments(spark, self.dir, scratch, self.specs, catalog, options)
        assert failures == 0
        for spec in self.specs:
            assert published(self.results, spec.key) == published(scratch, spec.key), spec.key


def test_reruns_after_every_batch_equal_a_full_recompute(spark: SparkSession, tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    modes = []
    for index, (exposures, events) in enumerate(batches(seed=11, count=4)):
        lake.add(exposures, events)
        options = options_at(6 + index)
        stats = lake.rerun(spark, options)
        lake.assert_equals_full(spark, options)
        modes.append((stats.mode, stats.incremental_experiments, dict(stats.full_reasons)))
    assert modes[0] == ("full", 0, {spec.key: "no state yet" for spec in SPECS})
    for mode, steps, reasons in modes[1:]:
        assert (mode, steps) == ("incremental", 2)
        assert reasons == {"inc-c": "slices and quantile metrics are recomputed in full"}
    document = published(lake.results, "inc-a")
    quality = document["data_quality"]
    assert quality["units"] > 0 and quality["duplicate_events"] > 0 and quality["multiple_variant_units"] > 0


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=hs.integers(0, 10_000), count=hs.integers(2, 3), change_at=hs.sampled_from([None, 1, 2]),
       step_hours=hs.integers(0, 5), driver=hs.booleans())  # fmt: skip
def test_any_sequence_of_batches_gives_what_a_full_recompute_gives(
    spark: SparkSession, tmp_path_factory: pytest.TempPathFactory, seed: int, count: int,
    change_at: int | None, step_hours: int, driver: bool,
) -> None:  # fmt: skip
    """Random batches (late and duplicate events, late exposures, rows that reach the lake after
    later ones), as-of moving on by `step_hours` within the day, and a catalog change at
    batch `change_at`: incremental == full after every batch, with small reruns on the driver
    (`localrerun`) or not."""
    lake = Lake(tmp_path_factory.mktemp("property"), SPECS[:2])
    catalog = CATALOG
    for index, (exposures, events) in enumerate(batches(seed, count)):
        lake.add(exposures, events)
        if index == change_at:
            catalog = CHANGED
        options = replace(options_at(min(6 + index * step_hours, 23)), driver_rerun_events=100_000 if driver else 0)
        stats = lake.rerun(spark, options, catalog)
        lake.assert_equals_full(spark, options, catalog)
        if index == change_at:
            changed = "metrics or their definitions changed: conversion"
            assert stats.full_reasons["inc-a"] == stats.full_reasons["inc-b"] == changed
        elif index:
            assert stats.incremental_experiments == 2, stats.full_reasons


@pytest.fixture
def kept(spark: SparkSession, tmp_path: Path) -> Lake:
    """A lake of two batches with state kept after the first (two experiments, no slices)."""
    lake = Lake(tmp_path, SPECS[:2])
    first, second = batches(seed=5, count=2)
    lake.add(*first)
    assert lake.rerun(spark, options_at(6)).mode == "full"
    lake.add(*second)
    return lake


def _current(lake: Lake) -> Path:
    return lake.state / (lake.state / st.CURRENT).read_text().strip()


def _spoil_totals(lake: Lake) -> None:
    (_current(lake) / TOTALS_FILE).write_text('{"inc-a": {"timeline": "not a list"}}')


def _spoil_pointer(lake: Lake) -> None:
    (lake.state / st.CURRENT).write_text("v-vanished\n")


def _rewrite_a_file(lake: Lake) -> None:
    kept_files = json.loads((_current(lake) / st.MANIFEST).read_text())
    path = lake.dir / sorted(kept_files)[0]
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize(("spoil", "reason"), [
    (_spoil_totals, "kept totals unusable: malformed totals"),
    (_spoil_pointer, "state v-vanished is incomplete: meta.json missing"),
    (_rewrite_a_file, "lake file changed since the state was kept"),
], ids=["corrupt-totals", "missing-version", "rewritten-lake-file"])  # fmt: skip
def test_unusable_state_means_a_full_recompute_with_the_reason(
    spark: SparkSession, kept: Lake, spoil: Any, reason: str
) -> None:
    spoil(kept)
    stats = kept.rerun(spark, options_at(7))
    assert stats.mode == "full" and stats.incremental_experiments == 0
    assert all(found.startswith(reason) for found in stats.full_reasons.values()), stats.full_reasons
    kept.assert_equals_full(spark, options_at(7))
    # ...and the state it kept is good again: the next rerun is incremental.
    assert kept.rerun(spark, options_at(8)).incremental_experiments == 2


def test_run_full_ignores_the_state(spark: SparkSession, kept: Lake) -> None:
    stats = kept.rerun(spark, options_at(7), force_full=True)
    assert stats.full_reasons == {spec.key: "forced (run --full)" for spec in SPECS[:2]}
    kept.assert_equals_full(spark, options_at(7))


def test_a_new_day_or_an_earlier_first_exposure_means_a_full_recompute(spark: SparkSession, kept: Lake) -> None:
    start = STARTS["inc-b"]
    earlier = {"event_id": "earliest", "experiment": "inc-b", "variant": "control", "unit_id": "newcomer",
               "timestamp": rfc3339(start),
               "received_at": rfc3339(DAY)}  # fmt: skip
    kept.add([earlier], [])
    stats = kept.rerun(spark, options_at(7))
    assert stats.full_reasons.get("inc-b", "").startswith("the timeline moved"), stats.full_reasons
    assert "inc-a" not in stats.full_reasons
    kept.assert_equals_full(spark, options_at(7))
    tomorrow = JobOptions(options_at(7).as_of_us + 24 * HOUR_US, 72 * HOUR_US, HOUR_US)
    stats = kept.rerun(spark, tomorrow)
    assert stats.incremental_experiments == 0 and stats.full_reasons["inc-a"].startswith("the timeline moved")
    kept.assert_equals_full(spark, tomorrow)


def test_copies_that_disagree_mean_a_full_recompute(spark: SparkSession, kept: Lake) -> None:
    _, events = records(5)
    event = next(e for e in events if e["name"] == "purchase")
    moved = {**event, "unit_id": "someone-else", "received_at": rfc3339(DAY)}
    kept.add([], [moved])
    stats = kept.rerun(spark, options_at(7))
    assert stats.incremental_experiments == 0
    assert stats.full_reasons["inc-a"] == "copies of an event disagree on name, time or unit"
    kept.assert_equals_full(spark, options_at(7))
    # No state reflects copies that disagree: the next rerun finds them again.
    again = kept.rerun(spark, options_at(8))
    assert again.incremental_experiments == 0 and set(again.full_reasons.values()) == {stats.full_reasons["inc-a"]}
    kept.assert_equals_full(spark, options_at(8))
