"""Each transform on tiny frames with hand-computed answers (one shared SparkSession).

The frames belong to one experiment, EXPERIMENT; the job's one-pass run (many experiments at
once) is checked against runs of each experiment alone in test_job_one_pass.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession

from services.common.catalog import parse_catalog
from services.metrics.job import transforms as tf
from services.metrics.job.timeline import DAY_US, HOUR_US, Timeline, parse_instant

EXPERIMENT = "exp"
EXPOSURE_DDL = "experiment string, event_id string, unit_id string, variant string, ts_us long, " \
               "received_us long, kafka_partition int, kafka_offset long"  # fmt: skip
EVENT_DDL = "experiment string, event_id string, unit_id string, name string, value double, ts_us long, " \
            "received_us long, kafka_partition int, kafka_offset long"  # fmt: skip
DAY0 = parse_instant("2026-11-01T00:00:00Z")
LATENESS = 72 * HOUR_US


def t(days: float, hours: float = 0) -> int:
    return DAY0 + round(days * DAY_US + hours * HOUR_US)


def exposures(spark: SparkSession, rows: Sequence[tuple[Any, ...]]) -> DataFrame:
    """rows: (event_id, unit, variant, ts, received)."""
    return spark.createDataFrame([(EXPERIMENT, *row, 0, i) for i, row in enumerate(rows)], EXPOSURE_DDL)


def events(spark: SparkSession, rows: Sequence[tuple[Any, ...]]) -> DataFrame:
    """rows: (event_id, unit, name, value, ts, received)."""
    return spark.createDataFrame([(EXPERIMENT, *row, 1, i) for i, row in enumerate(rows)], EVENT_DDL)


def entry_index(frame: DataFrame, timeline: Timeline) -> DataFrame:
    return tf.with_entry_index(frame, tf.timeline_frame(frame.sparkSession, {EXPERIMENT: timeline}))


def test_first_received_keeps_the_earliest_copy_and_counts_copies(spark: SparkSession) -> None:
    frame = events(spark, [
        ("a", "u1", "purchase", 5.0, t(0, 1), t(0, 3)),
        ("a", "u1", "purchase", 5.0, t(0, 1), t(0, 2)),  # the same event, received earlier: wins
        ("a", "u1", "purchase", 5.0, t(0, 1), t(0, 9)),
        ("b", "u2", "purchase", None, t(0, 1), t(0, 1)),
    ])  # fmt: skip
    rows = {r["event_id"]: r for r in tf.first_received(frame).collect()}
    assert (rows["a"]["received_us"], rows["a"]["copies"], rows["a"]["last_received_us"]) == (
        t(0, 2),
        3,
        t(0, 9),
    )
    assert rows["a"]["kafka_offset"] == 1 and rows["a"]["value"] == 5.0
    assert (rows["b"]["copies"], rows["b"]["value"]) == (1, None)


def test_distinct_events_flags_copies_that_disagree(spark: SparkSession) -> None:
    frame = events(spark, [
        ("same", "u1", "purchase", 5.0, t(0, 1), t(0, 3)),
        ("same", "u1", "purchase", 7.0, t(0, 1), t(0, 2)),  # another value: still the same event
        ("name", "u1", "purchase", 5.0, t(0, 1), t(0, 1)),
        ("name", "u1", "session_start", None, t(0, 1), t(0, 2)),
        ("time", "u1", "purchase", 5.0, t(0, 1), t(0, 4)),
        ("time", "u1", "purchase", 5.0, t(-3, 1), t(0, 5)),
        ("unit", "u1", "purchase", 5.0, t(0, 1), t(0, 4)),
        ("unit", "u2", "purchase", 5.0, t(0, 1), t(0, 5)),
        ("once", "u3", "purchase", 1.0, t(0, 1), t(0, 1)),
    ])  # fmt: skip
    distinct = tf.distinct_events(frame.drop("experiment"), 3)
    ids = event_ids(spark, ["same", "name", "time", "unit", "once"])
    rows = {(r["unit_id"], ids[r["id_hash"]]): r for r in distinct.collect()}
    assert {key: row["consistent"] for key, row in rows.items()} == {
        ("u1", "same"): True, ("u1", "name"): False, ("u1", "time"): False, ("u3", "once"): True,
        ("u1", "unit"): True, ("u2", "unit"): True,  # one copy each: only `hashes_across_units` sees them
    }  # fmt: skip
    same = rows[("u1", "same")]
    assert (same["value"], same["copies"], same["last_received_us"]) == (7.0, 2, t(0, 3))
    assert [ids[r["id_hash"]] for r in tf.hashes_across_units(distinct, 2).collect()] == ["unit"]


def event_ids(spark: SparkSession, ids: Sequence[str]) -> dict[int, str]:
    """id_hash -> event_id, for these ids."""
    frame = spark.createDataFrame([(i,) for i in ids], "event_id string")
    return {row["h"]: row["event_id"] for row in frame.select("event_id", tf.id_hash().alias("h")).collect()}


def test_distinct_events_are_partitioned_by_unit_and_sorted_for_the_join(spark: SparkSession) -> None:
    """The layout the join to the segments relies on (no exchange, no sort of the events):
    every unit in one partition, each partition sorted by unit."""
    frame = events(spark, [(f"e{i}", f"u{i % 7}", "purchase", 1.0, t(0, 1), t(0, 1 + i % 3)) for i in range(50)])
    distinct = tf.distinct_events(frame.drop("experiment"), 4).persist()
    try:
        assert distinct.rdd.getNumPartitions() == 4
        homes: dict[str, set[int]] = {}
        for index, partition in enumerate(distinct.rdd.glom().collect()):
            units = [row["unit_id"] for row in partition]
            assert units == sorted(units)
            for unit in units:
                homes.setdefault(unit, set()).add(index)
        assert len(homes) == 7 and all(len(found) == 1 for found in homes.values())
    finally:
        distinct.unpersist()


def test_hashes_across_units_finds_every_id_under_two_units_or_more(spark: SparkSession) -> None:
    frame = events(spark, [
        ("two", "u1", "purchase", 1.0, t(0, 1), t(0, 1)),
        ("two", "u2", "purchase", 1.0, t(0, 1), t(0, 1)),
        ("three", "u1", "purchase", 1.0, t(0, 1), t(0, 1)),
        ("three", "u2", "purchase", 1.0, t(0, 1), t(0, 2)),
        ("three", "u3", "purchase", 1.0, t(0, 1), t(0, 3)),
        ("retried", "u4", "purchase", 1.0, t(0, 1), t(0, 1)),
        ("retried", "u4", "purchase", 1.0, t(0, 1), t(0, 2)),
        ("alone", "u5", "purchase", 1.0, t(0, 1), t(0, 1)),
    ])  # fmt: skip
    found = tf.hashes_across_units(tf.distinct_events(frame.drop("experiment"), 2), 3)
    ids = event_ids(spark, ["two", "three", "retried", "alone"])
    assert sorted(ids[r["id_hash"]] for r in found.collect()) == ["three", "two"]


def test_conflicting_rows_are_de_duplicated_per_experiment_by_event_id(spark: SparkSession) -> None:
    """Whatever brings an id there (copies that disagree, or a hash it shares with another id),
    each experiment gets the first-received copy of each event_id in its scope."""
    frame = events(spark, [
        ("a", "u1", "purchase", 1.0, t(0, 1), t(0, 2)),
        ("a", "u2", "purchase", 2.0, t(0, 1), t(0, 1)),  # received first: wins, with its unit
        ("b", "u3", "purchase", 3.0, t(0, 1), t(0, 1)),
        ("c", "u4", "purchase", 4.0, t(0, 1), t(0, 1)),  # not among the hashes
    ]).drop("experiment")  # fmt: skip
    ids = event_ids(spark, ["a", "b", "c"])
    hashes = spark.createDataFrame([(h,) for h, i in ids.items() if i != "c"], "id_hash long")
    scopes = tf.event_scopes(spark, {EXPERIMENT: (["purchase"], t(-1))})
    rows = {ids[r["id_hash"]]: r for r in tf.conflicting_rows(frame, hashes, scopes).collect()}
    assert {key: (r["experiment"], r["unit_id"], r["value"], r["copies"]) for key, r in rows.items()} == {
        "a": (EXPERIMENT, "u2", 2.0, 2), "b": (EXPERIMENT, "u3", 3.0, 1),
    }  # fmt: skip


def test_entry_index_takes_the_later_of_time_and_receipt(spark: SparkSession) -> None:
    timeline = Timeline.build(t(0, 10), t(4, 12), LATENESS)
    assert timeline.frozen_days == 1  # Nov 1 froze at Nov 5 00:00; Nov 2 freezes at Nov 6
    frame = events(spark, [
        ("on-time", "u", "x", None, t(0, 10), t(0, 10.1)),
        ("late-within", "u", "x", None, t(0, 10), t(3, 23)),  # before day 0's freeze: still day 0
        ("after-freeze", "u", "x", None, t(0, 10), t(4, 1)),  # enters the first provisional day
        ("pre-period", "u", "x", None, t(-3), t(-3)),
        ("day-two", "u", "x", None, t(2, 5), t(2, 5)),
        ("clock-skew", "u", "x", None, t(3, 5), t(1, 0)),  # received before its timestamp
    ])  # fmt: skip
    got = {r["event_id"]: (r["k_time"], r["k_received"], r["k"]) for r in entry_index(frame, timeline).collect()}
    assert got == {
        "on-time": (0, 0, 0), "late-within": (0, 0, 0), "after-freeze": (0, 1, 1), "pre-period": (0, 0, 0),
        "day-two": (2, 0, 2), "clock-skew": (3, 0, 3),
    }  # fmt: skip


def segments_of(spark: SparkSession, rows: Sequence[tuple[Any, ...]], timeline: Timeline) -> list[tuple[Any, ...]]:
    frame = tf.unit_segments(entry_index(exposures(spark, rows), timeline))
    return sorted(
        (r["unit_id"], r["seg_start"], r["seg_end"], r["first_us"], r["variant"], r["included"])
        for r in frame.collect()
    )  # fmt: skip


def test_segments_follow_late_exposures(spark: SparkSession) -> None:
    timeline = Timeline.build(t(0, 10), t(6, 12), LATENESS)  # days 0-2 frozen
    rows = [
        ("a1", "switcher", "control", t(0, 10), t(0, 10)),
        ("a2", "switcher", "treatment", t(2, 10), t(2, 10)),  # a second variant on day 2
        ("b1", "rewound", "control", t(1, 10), t(1, 10)),
        ("b2", "rewound", "control", t(0, 9), t(5, 0)),  # earlier; arrives after days 0 and 1 froze
        ("c1", "steady", "treatment", t(1, 1), t(1, 1)),
        ("c2", "steady", "treatment", t(1, 2), t(1, 2)),
    ]
    assert segments_of(spark, rows, timeline) == [
        ("rewound", 1, 2, t(1, 10), "control", True),
        ("rewound", 2, None, t(0, 9), "control", True),  # from day 2 on, its start moves back
        ("steady", 1, None, t(1, 1), "treatment", True),
        ("switcher", 0, 2, t(0, 10), "control", True),
        ("switcher", 2, None, t(0, 10), "control", False),  # left out from day 2 on
    ]  # fmt: skip


CATALOG = parse_catalog("""
metrics:
  - {name: conversion, type: proportion, event: purchase, window_hours: 24, cuped_lookback_days: 1, owner: test}
  - {name: revenue, type: mean, event: purchase, value: value, cuped_lookback_days: 7, owner: test}
  - name: revenue_per_session
    owner: test
    type: ratio
    numerator: {event: purchase, value: value}
    denominator: {event: session_start}
""")


def test_windows_include_their_start_and_exclude_their_end(spark: SparkSession) -> None:
    timeline = Timeline.build(t(2), t(5), LATENESS)
    segments = tf.unit_segments(entry_index(exposures(spark, [("x", "u", "control", t(2), t(2))]), timeline))
    first = t(2)
    names = ["at-first", "window-last", "window-end", "pre-last", "pre-first", "pre-before"]
    frame = events(spark, [  # the value tells them apart
        ("at-first", "u", "purchase", 1.0, first, first),
        ("window-last", "u", "purchase", 2.0, first + 24 * HOUR_US - 1, first),
        ("window-end", "u", "purchase", 3.0, first + 24 * HOUR_US, first),
        ("pre-last", "u", "purchase", 4.0, first - 1, first),
        ("pre-first", "u", "purchase", 5.0, first - DAY_US, first),
        ("pre-before", "u", "purchase", 6.0, first - DAY_US - 1, first),
    ])  # fmt: skip
    seg_events = tf.segment_events(entry_index(frame, timeline), segments)
    classified = tf.classify_events(seg_events, tf.metric_roles(spark, {EXPERIMENT: CATALOG.metrics[:1]}))
    got = {names[int(r["value"]) - 1]: (r["post"], r["pre"]) for r in classified.collect()}
    assert got == {
        "at-first": (True, False), "window-last": (True, False), "pre-last": (False, True),
        "pre-first": (False, True),
    }  # fmt: skip


@pytest.fixture(scope="module")
def tiny(spark: SparkSession) -> tuple[list[Any], dict[str, Any], Timeline]:
    """Four units, hand-checkable: see the expected numbers in the tests below."""
    from services.metrics.job.aggregate import compute_statistics
    from services.metrics.job.document import accumulate
    from services.metrics.job.plan import ExperimentPlan
    from services.metrics.job.run import JobOptions
    from services.metrics.job.sources import event_source

    options = JobOptions(as_of_us=t(5, 12), lateness_us=LATENESS, late_threshold_us=HOUR_US)
    raw_exposures = exposures(spark, [
        ("x1", "u1", "control", t(0, 10), t(0, 10)), ("x1", "u1", "control", t(0, 10), t(0, 11)),
        ("x2", "u2", "control", t(0, 12), t(0, 12)), ("x3", "u3", "treatment", t(0, 9), t(0, 9)),
        ("x4", "u4", "treatment", t(0, 9), t(0, 9)), ("x5", "u4", "control", t(1, 9), t(1, 9)),
    ])  # fmt: skip
    raw_events = events(spark, [
        ("p1", "u1", "purchase", 10.0, t(0, 11), t(0, 11)),
        ("p2", "u1", "purchase", 5.0, t(1, 9), t(5, 6)),  # day 1 froze at Nov 5 00:00: late after freeze
        ("s1", "u1", "session_start", None, t(0, 10), t(0, 10)),
        ("s2", "u1", "session_start", None, t(1, 8), t(1, 8)),
        ("p0", "u1", "purchase", 4.0, t(-2), t(-2)),  # pre-period: the covariate
        ("p3", "u3", "purchase", 20.0, t(0, 12), t(0, 12)),
        ("s3", "u3", "session_start", None, t(0, 12), t(0, 12)),
        ("s3", "u3", "session_start", None, t(0, 12), t(0, 13)),  # duplicate
        ("p4", "u4", "purchase", 99.0, t(0, 10), t(0, 10)),  # u4 saw both variants: not counted
        ("p5", "u9", "purchase", 7.0, t(0, 10), t(0, 10)),  # never exposed
    ])  # fmt: skip
    timeline = Timeline.build(t(0, 9), options.as_of_us, LATENESS)
    plan = ExperimentPlan(EXPERIMENT, tuple(CATALOG.metrics), timeline, t(0, 9))
    source = event_source(raw_events.drop("experiment"), {EXPERIMENT: plan})
    exposure_frame = tf.first_received(raw_exposures)
    [(totals, _)] = compute_statistics(exposure_frame, source, {EXPERIMENT: plan}, options).values()
    source.release()
    return accumulate(totals.metric_rows(), totals.unit_rows(), timeline.days), totals.quality(), timeline


def stats(snapshot: Any, metric: str, variant: str) -> dict[str, float]:
    """A variant's statistics as published: `n` is its units (the job's sums leave it out)."""
    summed = {name: float(v) for name, v in zip(tf.VECTOR, snapshot.stats[(metric, variant)], strict=True)}
    assert summed["n"] == 0
    return {**summed, "n": float(snapshot.units.get(variant, 0))}


def test_latest_statistics_by_hand(tiny: tuple[list[Any], dict[str, Any], Timeline]) -> None:
    snapshots, _, timeline = tiny
    latest = snapshots[timeline.latest]
    assert latest.units == {"control": 2, "treatment": 1}  # u4 left out once it saw control
    revenue = stats(latest, "revenue", "control")  # u1: y=15, x=4; u2: y=0, x=0
    assert (revenue["n"], revenue["sum"], revenue["sum_squares"]) == (2, 15, 225)
    assert (revenue["cov_sum"], revenue["cov_sum_squares"], revenue["cov_sum_products"]) == (4, 16, 60)
    # u1 bought within 24 h; its pre-period purchase is 2 days back, outside the 1-day lookback
    conversion = stats(latest, "conversion", "control")
    assert (conversion["sum"], conversion["cov_sum"], conversion["cov_sum_products"]) == (1, 0, 0)
    ratio = stats(latest, "revenue_per_session", "control")  # u1: y=15, d=2, x=4
    assert (ratio["den_sum"], ratio["den_sum_squares"], ratio["den_sum_products"]) == (2, 4, 30)
    assert ratio["cov_den_products"] == 8
    treated = stats(latest, "revenue_per_session", "treatment")  # u3: y=20, d=1 (duplicate dropped)
    assert (treated["n"], treated["sum"], treated["den_sum"], treated["den_sum_products"]) == (1, 20, 1, 20)


def test_frozen_day_ignores_what_arrived_after_its_freeze(
    tiny: tuple[list[Any], dict[str, Any], Timeline],
) -> None:
    snapshots, counts, timeline = tiny
    assert timeline.frozen_days == 2
    day0, day1 = snapshots[0], snapshots[1]
    assert day0.units == {"control": 2, "treatment": 2}  # u4's control exposure is on day 1
    assert day1.units == {"control": 2, "treatment": 1}
    assert stats(day1, "revenue", "control")["sum"] == 10  # p2 (day 1) arrived after day 1 froze
    assert stats(snapshots[2], "revenue", "control")["sum"] == 15  # provisional days include it
    assert stats(day0, "revenue", "treatment")["sum"] == 20 + 99  # u4 still analysed on day 0
    assert counts["late_after_freeze"] == 1 and counts["late_events_included"] == 1
    assert (counts["units"], counts["multiple_variant_units"]) == (3, 1)  # u4 is not analysed
    assert counts["events"]["events_without_exposure"] == 1  # p5 of the never-exposed u9
    assert counts["events"]["duplicates"] == 1
