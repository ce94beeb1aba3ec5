"""The per-unit state: a rerun adds new events to the kept units' rows instead of reading the
lake's old events again, and publishes exactly what a from-scratch run publishes.

Which way each unit went is read from the job's log line "incremental units" (`updated`:
from the kept per-unit rows; `recomputed`: from the lake, now and as the kept run saw it).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from services.metrics.job import unitstate as us
from services.metrics.job.timeline import Timeline
from tests.generator import rfc3339
from tests.unit.metrics.test_job_incremental import (
    DAY,
    SPECS,
    STARTS,
    Lake,
    _current,
    options_at,
    published,
    records,
)

Record = dict[str, Any]


def units_of(key: str, count: int) -> list[str]:
    exposures, _ = records(5)
    return sorted({r["unit_id"] for r in exposures if r["experiment"] == key})[:count]


def event(event_id: str, unit: str, name: str, at: Any, received: Any, value: float | None = None) -> Record:
    return {"event_id": event_id, "name": name, "unit_id": unit, "value": value, "properties": {},
            "timestamp": rfc3339(at), "received_at": rfc3339(received)}  # fmt: skip


@pytest.fixture
def kept(spark: SparkSession, tmp_path: Path) -> Lake:
    """Every record of two experiments, a full run at 06:00 that keeps its state."""
    lake = Lake(tmp_path, SPECS[:2])
    lake.add(*records(5))
    assert lake.rerun(spark, options_at(6)).mode == "full"
    return lake


REUSED = "exposure files unchanged since the kept run: its exposure summaries stand"


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def unit_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    return [(r.updated, r.recomputed) for r in caplog.records if r.getMessage() == "incremental units"]  # type: ignore[attr-defined]


def test_the_state_keeps_per_unit_rows_and_event_hashes(kept: Lake) -> None:
    current = _current(kept)
    assert us.usable(current) is None
    assert list((current / us.UNITS_DIR / "0000" / "rows").glob("*.parquet"))
    assert list((current / us.HASHES_DIR).glob("*.parquet"))


def test_new_events_update_their_units_from_the_state(
    spark: SparkSession, kept: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    """New events of exposed units (and of a unit never exposed), received after the kept
    run: every unit is updated from its kept rows, none is read from the lake again."""
    at = DAY + timedelta(hours=6, minutes=20)
    units = units_of("inc-a", 6) + units_of("inc-b", 6) + ["never-exposed"]
    new = []
    for index, unit in enumerate(units):
        new.append(event(f"new-p-{index}", unit, "purchase", at, at + timedelta(seconds=5), 10.25 + index))
        new.append(event(f"new-s-{index}", unit, "session_start", at, at + timedelta(seconds=5)))
        new.append(event(f"new-l-{index}", unit, "page_load", at, at + timedelta(seconds=5), 250.0))
        new.append(event(f"new-e-{index}", unit, "client_error", at, at + timedelta(seconds=5)))
    new.append({**new[0], "received_at": rfc3339(at + timedelta(seconds=40))})  # an SDK retry among the new rows
    kept.add([], new)
    caplog.set_level(logging.INFO, logger="services.metrics.job")
    stats = kept.rerun(spark, options_at(7))
    assert stats.incremental_experiments == 2
    assert unit_lines(caplog) == [(len(set(units)), 0)]
    assert REUSED in messages(caplog), "no exposure file changed: the kept exposure summaries stand"
    kept.assert_equals_full(spark, options_at(7))


def test_exposure_rows_past_the_kept_as_of_make_the_rerun_summarise_exposures_again(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An exposure already in a kept file but received after the kept run's as-of enters the
    rerun at a later as-of: the files are unchanged, yet the kept summary is not the rerun's
    (one more exposure), which the files' Parquet statistics tell. A new exposure file, too,
    makes the rerun summarise every exposure."""
    lake = Lake(tmp_path, SPECS[:2])
    exposures, events = records(5)
    template = next(r for r in exposures if r["experiment"] == "inc-a")
    pending = {**template, "event_id": "pending", "unit_id": "pending-unit",
               "timestamp": rfc3339(DAY + timedelta(hours=6, minutes=30)),
               "received_at": rfc3339(DAY + timedelta(hours=6, minutes=40))}  # fmt: skip
    lake.add([*exposures, pending], events)
    assert lake.rerun(spark, options_at(6)).mode == "full"
    caplog.set_level(logging.INFO, logger="services.metrics.job")
    assert lake.rerun(spark, options_at(6)).incremental_experiments == 2
    assert REUSED in messages(caplog), "the same as-of and files: the summaries stand"
    caplog.clear()
    assert lake.rerun(spark, options_at(7)).incremental_experiments == 2
    assert REUSED not in messages(caplog)
    lake.assert_equals_full(spark, options_at(7))
    caplog.clear()
    later = DAY + timedelta(hours=7, minutes=30)
    lake.add([{**template, "event_id": "another", "unit_id": "another-unit", "timestamp": rfc3339(later),
               "received_at": rfc3339(later)}], [])  # fmt: skip
    assert lake.rerun(spark, options_at(8)).incremental_experiments == 2
    assert REUSED not in messages(caplog)
    lake.assert_equals_full(spark, options_at(8))


def test_late_rows_updated_when_they_enter_from_the_horizon_on(
    spark: SparkSession, kept: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows received before the kept run's as-of that reached the lake after it: one entering
    at the horizon is updated from the state; one entering before it, and a re-sent copy of a
    kept event, send their units to the lake."""
    timeline = Timeline.build(int(STARTS["inc-a"].timestamp() * 1e6), options_at(6).as_of_us, 72 * 3_600_000_000)
    assert us.horizon(timeline) == 5  # day 0 is 2026-10-01: days 0-5 are frozen at 06:00 on the 10th
    a, b, c = units_of("inc-a", 3)
    old = STARTS["inc-a"] + timedelta(days=2, hours=12)
    at_horizon = event("late-5", a, "purchase", old, DAY - timedelta(hours=20), 99.5)  # receipt index 5
    before = event("late-4", b, "purchase", old, DAY - timedelta(days=2), 7.0)  # receipt index 4
    _, events = records(5)
    resent = next(e for e in events if e["unit_id"] == c and "2026-10-04" < e["timestamp"] < "2026-10-09"
                  and e["received_at"] < "2026-10-09")  # fmt: skip
    kept.add([], [at_horizon, before, {**resent, "received_at": rfc3339(DAY + timedelta(hours=6, minutes=30))}])
    caplog.set_level(logging.INFO, logger="services.metrics.job")
    stats = kept.rerun(spark, options_at(7))
    assert stats.incremental_experiments == 2
    assert unit_lines(caplog) == [(1, 2)]
    kept.assert_equals_full(spark, options_at(7))
    # The state the rerun kept is whole: the next rerun updates from it again.
    assert us.usable(_current(kept)) is None
    kept.add([], [event("later", a, "purchase", DAY + timedelta(hours=7), DAY + timedelta(hours=7, minutes=1), 1.0)])
    caplog.clear()
    kept.rerun(spark, options_at(8))
    assert unit_lines(caplog) == [(1, 0)]
    kept.assert_equals_full(spark, options_at(8))


def test_unreadable_per_unit_state_recomputes_changed_units_from_the_lake(
    spark: SparkSession, kept: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    for path in (_current(kept) / us.UNITS_DIR).rglob("*.parquet"):
        path.write_bytes(b"not parquet")
    (unit,) = units_of("inc-a", 1)
    at = DAY + timedelta(hours=6, minutes=10)
    kept.add([], [event("fresh", unit, "purchase", at, at, 3.0)])
    caplog.set_level(logging.INFO, logger="services.metrics.job")
    stats = kept.rerun(spark, options_at(7))
    assert stats.incremental_experiments == 2 and not unit_lines(caplog)
    reasons = [r.reason for r in caplog.records if r.getMessage() == "rerun recomputes the changed units from the lake"]  # type: ignore[attr-defined]
    assert reasons and reasons[0].startswith("per-unit state unreadable")
    kept.assert_equals_full(spark, options_at(7))
    # That rerun could not complete the state, so it kept none; the one after is whole again.
    assert us.usable(_current(kept)) is not None
    kept.rerun(spark, options_at(8), force_full=True)
    assert us.usable(_current(kept)) is None


def test_an_overflow_on_the_additive_path_recomputes_the_units_from_the_lake(
    spark: SparkSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new purchase takes a unit's revenue past what the per-unit arrays let its square reach
    (2^62 millionths: about 2.147 million): the update from the kept rows overflows, and the
    rerun, still incremental, recomputes the changed units from the lake instead, in Spark
    frames (which keep no per-unit state)."""
    lake = Lake(tmp_path, SPECS[:2])
    exposures, events = records(5)
    (unit,) = units_of("inc-a", 1)
    at = DAY + timedelta(hours=5)
    lake.add(exposures, [*events, event("big", unit, "purchase", at, at, 2_000_000.0)])
    assert lake.rerun(spark, options_at(6)).mode == "full"
    assert us.usable(_current(lake)) is None, "the kept run fits the arrays and kept its per-unit rows"
    later = DAY + timedelta(hours=6, minutes=10)
    lake.add([], [event("bigger", unit, "purchase", later, later, 200_000.0)])
    caplog.set_level(logging.INFO, logger="services.metrics.job")
    stats = lake.rerun(spark, options_at(7))
    assert stats.incremental_experiments == 2
    assert "64-bit sums would overflow; recomputing the changed units from the lake" in messages(caplog)
    assert "the one-pass run failed; computing each experiment alone" not in messages(caplog)
    assert us.usable(_current(lake)) is not None
    lake.assert_equals_full(spark, options_at(7))


def test_a_rerun_past_the_last_layer_rewrites_the_rows(tmp_path: Path) -> None:
    """A state with MAX_LAYERS layers is not stacked on: `carry` declines (the caller then
    rewrites every kept row into one layer), and nothing is linked into the staging."""
    previous, staging = tmp_path / "v-old", tmp_path / "staging"
    for n in range(us.MAX_LAYERS):
        (previous / us.UNITS_DIR / f"{n:04d}" / "rows").mkdir(parents=True)
    staging.mkdir()
    tables = us.UnitTables(staging)
    assert not tables.carry(previous, None)  # type: ignore[arg-type]  # declined before the frame is read
    assert list(staging.iterdir()) == [] and tables.layer == 0


def test_layers_must_be_numbered_without_a_gap(tmp_path: Path) -> None:
    for name in ("0000", "0002"):
        (tmp_path / us.UNITS_DIR / name / "rows").mkdir(parents=True)
    (tmp_path / us.HASHES_DIR).mkdir()
    assert (us.usable(tmp_path) or "").startswith("per-unit state unreadable: its layers")


DRIVER = "rerun computed on the driver"


def _kept_rows(lake: Lake) -> list[dict[str, Any]]:
    """The per-unit rows the lake's current state holds (each unit's from its last layer)."""
    rows = us.units_table(_current(lake), ["inc-a", "inc-b"]).to_pylist()
    return sorted(rows, key=lambda row: (row["experiment"], row["unit_id"], row["seg_start"]))


def _hashes(lake: Lake) -> list[int]:
    return sorted(us.hashes_array(_current(lake)).to_pylist())


def test_a_small_rerun_on_the_driver_publishes_and_keeps_what_the_spark_way_does(
    spark: SparkSession, kept: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    """The same new events, from the same kept state, once on the driver (`localrerun`) and
    once with Spark jobs (`driver_rerun_events` 0): the same documents, the same per-unit rows
    and hashes kept, and both what a from-scratch run publishes."""
    at = DAY + timedelta(hours=6, minutes=20)
    units = units_of("inc-a", 5) + units_of("inc-b", 5) + ["never-exposed"]
    new = [event(f"small-{index}-{name}", unit, name, at, at + timedelta(seconds=5), 4.5 + index)
           for index, unit in enumerate(units) for name in ("purchase", "session_start", "page_load")]  # fmt: skip
    new.append({**new[0], "received_at": rfc3339(at + timedelta(seconds=30))})  # an SDK retry among the new rows
    kept.add([], new)
    before = kept.state.parent / "state-before"
    shutil.copytree(kept.state, before)
    caplog.set_level(logging.INFO, logger="services.metrics.job")
    options = options_at(7)
    assert kept.rerun(spark, options).incremental_experiments == 2
    assert DRIVER in messages(caplog)
    assert unit_lines(caplog) == [(len(set(units)), 0)]
    on_driver = {spec.key: published(kept.results, spec.key) for spec in kept.specs}
    rows, hashes = _kept_rows(kept), _hashes(kept)
    assert {row["unit_id"] for row in rows} >= set(units) - {"never-exposed"}
    kept.assert_equals_full(spark, options)

    shutil.rmtree(kept.state)
    shutil.copytree(before, kept.state)
    caplog.clear()
    assert kept.rerun(spark, replace(options, driver_rerun_events=0)).incremental_experiments == 2
    assert DRIVER not in messages(caplog)
    assert {spec.key: published(kept.results, spec.key) for spec in kept.specs} == on_driver
    assert _kept_rows(kept) == rows
    assert _hashes(kept) == hashes


def test_reruns_on_the_driver_stack_layers_then_rewrite_them(
    spark: SparkSession, kept: Lake, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rerun after rerun on the driver, each a layer over the kept rows, until MAX_LAYERS (2
    here): the next rewrites every unit's rows into one layer; each equals a run from scratch.
    More new events than the limit go the Spark way."""
    monkeypatch.setattr(us, "MAX_LAYERS", 2)
    caplog.set_level(logging.INFO, logger="services.metrics.job")
    a, b = units_of("inc-a", 2)
    layers = []
    for hour, unit in ((7, a), (8, b), (9, a)):
        at = DAY + timedelta(hours=hour - 1, minutes=30)
        kept.add([], [event(f"stack-{hour}", unit, "purchase", at, at, float(hour))])
        assert kept.rerun(spark, options_at(hour)).incremental_experiments == 2
        layers.append(sorted(path.name for path in (_current(kept) / us.UNITS_DIR).iterdir()))
        kept.assert_equals_full(spark, options_at(hour))
    assert messages(caplog).count(DRIVER) == 3
    assert layers == [["0000", "0001"], ["0000"], ["0000", "0001"]]
    caplog.clear()
    at = DAY + timedelta(hours=9, minutes=30)
    kept.add([], [event(f"many-{n}", a, "purchase", at, at, 1.0) for n in range(3)])
    assert kept.rerun(spark, replace(options_at(10), driver_rerun_events=2)).incremental_experiments == 2
    assert DRIVER not in messages(caplog)
    assert [r.reason for r in caplog.records if r.getMessage() == "rerun not on the driver"] == [  # type: ignore[attr-defined]
        "more than 2 new event rows"
    ]
    kept.assert_equals_full(spark, options_at(10))
