"""The numpy pieces of the per-unit arithmetic (`unitmath`) against exact Python integers.

Whole passes are compared with the Spark frames in test_job_one_pass.py and test_micros.py;
these pin the pieces whose edge cases a random lake rarely reaches: products beyond longs,
keys too wide to pack, running sums that could leave 64 bits."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql import SparkSession

from services.common.catalog import DEFAULT_CATALOG, load_catalog
from services.metrics.job import transforms as tf
from services.metrics.job import unitmath as um
from services.metrics.job.plan import ExperimentPlan
from services.metrics.job.timeline import Timeline
from tests.unit.metrics.test_micros import rounded_product


def test_products_round_like_the_frames() -> None:
    rng = random.Random(29)
    edge = tf.LONG_FACTOR
    pairs = [(1000, 500), (-1000, 500), (1000, -499), (-1, 1), (0, -5), (edge, edge), (-edge, edge),
             (edge + 1, edge), (edge + 1, -(edge + 1)), (10**12, 3), (-(10**12), 10**9), (1_500_000, -1)]  # fmt: skip
    for _ in range(5000):
        scale = rng.choice([10**3, 10**6, 10**9, edge, 10**12, 10**15])
        pairs.append((rng.randint(-scale, scale), rng.randint(-scale, scale)))
    fits = [(a, b) for a, b in pairs if abs(rounded_product(a, b)) < um.SAFE]
    left, right = (np.array(column, np.int64) for column in zip(*fits, strict=True))
    assert um._product(left, right).tolist() == [rounded_product(a, b) for a, b in fits]


def test_a_product_beyond_64_bits_is_an_overflow() -> None:
    with pytest.raises(um.Overflow):
        um._product(np.array([3 * 10**12], np.int64), np.array([3 * 10**12], np.int64))


@pytest.mark.parametrize("widths", [(40, 9, 30, 30), (2**40, 2**20, 30, 30)], ids=["packed", "too-wide"])
def test_keys_sort_and_group_as_lexicographic_order(widths: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    columns = tuple(rng.integers(0, width, 2000) for width in widths)
    key = um._Key(columns)
    assert (key.packed is not None) == (widths[0] < 2**20)
    order = key.order()
    rows = sorted(zip(*(column.tolist() for column in columns), strict=True))
    ordered = list(zip(*(column[order].tolist() for column in columns), strict=True))
    assert ordered == rows
    taken = key.take(order)
    for leading in range(1, len(widths) + 1):
        expected = [i == 0 or rows[i][:leading] != rows[i - 1][:leading] for i in range(len(rows))]
        assert taken.starts(leading).tolist() == expected


def test_running_sums_restart_per_group_and_refuse_to_overflow() -> None:
    values = np.array([1, 2, 3, 10, 20, -5, 7], np.int64)
    starts = np.array([True, False, False, True, False, False, True])
    assert um._running(values, starts).tolist() == [1, 3, 6, 10, 30, 25, 7]
    assert um._running(values[:0], starts[:0]).tolist() == []
    with pytest.raises(um.Overflow):
        um._running(np.array([2**61, 2**61], np.int64), np.array([True, False]))


@pytest.mark.parametrize("counted_rows", [um.COUNTED_ROWS, 0], ids=["bincount", "sorted"])
def test_group_sums_are_exact_per_key_both_ways(monkeypatch: pytest.MonkeyPatch, counted_rows: int) -> None:
    # Changes near +-2^62 and tiny ones over keys of a few groups: each half's sum per key
    # against Python integers (both ways must give Spark's halves), the halves joined the sum.
    monkeypatch.setattr(um, "COUNTED_ROWS", counted_rows)
    rng = np.random.default_rng(11)
    rows = 5000
    columns = (rng.integers(0, 7, rows), rng.integers(0, 3, rows), rng.integers(0, 40, rows))
    scales = rng.choice([10, 10**6, um.SAFE - 1], (len(tf.SUMS), rows))
    changes = [rng.integers(-scale, scale, dtype=np.int64) for scale in scales]
    keys, halves = um._group_sums(columns, changes)
    expected: dict[tuple[int, ...], list[tuple[int, int, int]]] = {}
    for index, key in enumerate(zip(*(column.tolist() for column in columns), strict=True)):
        sums = expected.setdefault(key, [(0, 0, 0)] * len(tf.SUMS))
        for position, change in enumerate(changes):
            value, (hi, lo, total) = int(change[index]), sums[position]
            sums[position] = (hi + (value >> tf.LOW_BITS), lo + (value & (2**tf.LOW_BITS - 1)), total + value)
    found = list(zip(*(key.tolist() for key in keys), strict=True))
    assert found == sorted(expected)
    for position, name in enumerate(tf.SUMS):
        high, low = halves[f"{name}_hi"].tolist(), halves[f"{name}_lo"].tolist()
        assert high == [expected[key][position][0] for key in found]
        assert low == [expected[key][position][1] for key in found]
        assert [hi * 2**tf.LOW_BITS + lo for hi, lo in zip(high, low, strict=True)] == [
            expected[key][position][2] for key in found
        ]


def test_group_sums_of_no_rows_are_empty() -> None:
    none = np.zeros(0, np.int64)
    keys, halves = um._group_sums((none, none, none), [none] * len(tf.SUMS))
    assert [key.size for key in keys] == [0, 0, 0] and all(sums.size == 0 for sums in halves.values())


def test_events_before_exposure_expand_only_to_roles_with_a_pre_period() -> None:
    # The default catalog: per (experiment, event name), the roles with a CUPED pre-period come
    # first, and only they (numerators with a lookback) count as early.
    timeline = Timeline.build(0, 10 * 86_400_000_000, 0)
    experiment = ExperimentPlan("e", tuple(load_catalog(DEFAULT_CATALOG).metrics), timeline, 0)
    plan = um.UnitPlan.build({"e": experiment}, 0)
    early = plan.role_num & (plan.role_lookback > 0)
    assert early.any() and not early.all()
    for n in range(len(plan.names)):
        first, count = int(plan.roles_from[0, n]), int(plan.roles_count[0, n])
        flags = early[first : first + count].tolist()
        assert flags == sorted(flags, reverse=True) and sum(flags) == plan.early_count[0, n]


def _kept_table(rows: list[tuple[str, str, int, str, bool, list[tuple[int, int, int, int, int]]]]) -> pa.Table:
    """Kept per-unit rows (experiment, unit, seg_start, variant, included, [(rank, c, num, den,
    pre)]) as a rerun reads them (`unitmath.kept_inputs`): each segment once (through the
    latest snapshot; a unit's first is its lowest seg_start), each row as KEPT."""
    records = np.array([record for *_, packed in rows for record in packed], um.ROW)
    starts = np.cumsum([0] + [len(packed) for *_, packed in rows])[:-1]
    experiment, unit, seg_start, variant, included, _ = (
        (list(column) for column in zip(*rows, strict=True)) if rows else [[]] * 6
    )
    lowest: dict[tuple[str, str], int] = {}
    for key, start in zip(zip(experiment, unit, strict=True), seg_start, strict=True):
        lowest[key] = min(lowest.get(key, start), start)
    columns = {"experiment": pa.array(experiment, pa.string()), "unit_id": pa.array(unit, pa.string()),
               "seg_start": pa.array(seg_start, pa.int32()), "seg_end": pa.nulls(len(rows), pa.int32()),
               "first_segment": pa.array([lowest[(e, u)] == s for e, u, s in zip(experiment, unit, seg_start,
                                                                                  strict=True)], pa.bool_()),
               "first_us": pa.array([0] * len(rows), pa.int64()), "variant": pa.array(variant, pa.string()),
               "included": pa.array(included, pa.bool_()), "rows": tf.packed_records(records, starts)}  # fmt: skip
    inputs = um.kept_inputs(pa.table([columns[name] for name in um.UNIT_COLUMNS], names=list(um.UNIT_COLUMNS)))
    tags = np.asarray(inputs["tag"])
    segment = [(e, u, s) for e, u, s in zip(experiment, unit, seg_start, strict=True)]
    once = np.array([index == segment.index(key) for index, key in enumerate(segment)] + [True] * len(rows), bool)
    return inputs.filter(pa.array(once | (tags == um.KEPT_TAG)))


def _read_back(plan: um.UnitPlan, written: pa.Table) -> um._Units:
    """UNITS output rows, read as a rerun reads the state (`unitmath.kept_inputs`)."""
    return um._Units(plan, um.kept_inputs(written.select(list(um.UNIT_COLUMNS))))


def _values(units: um._Units) -> dict[tuple[Any, ...], tuple[int, int, int]]:
    """(unit, metric, segment, snapshot) -> the running (num, den, pre) at every snapshot from 3 on."""
    kept, found = units.kept, dict[tuple[Any, ...], tuple[int, int, int]]()
    for index in range(kept.unit.size):
        key = (units.unit_ids[kept.unit[index]].as_py(), int(kept.metric[index]), int(kept.seg_start[index]))
        for at in range(max(3, key[2]), 7):
            if kept.entry[index] <= at:
                was = found.get((*key, at), (0, 0, 0))
                found[(*key, at)] = (was[0] + int(kept.num[index]), was[1] + int(kept.den[index]),
                                     was[2] + int(kept.pre[index]))  # fmt: skip
    return found


def test_kept_rows_collapse_before_the_horizon_and_read_back() -> None:
    """The per-unit state packs each (unit, experiment, segment)'s rows into one value; rows
    before the horizon h become one at h - 1, which changes no unit value from h - 1 on, and
    what is written reads back as the same rows (metrics named by rank, whatever the plan's
    order)."""
    metrics = load_catalog(DEFAULT_CATALOG).metrics
    plans = {"e": ExperimentPlan("e", (metrics[3], metrics[1]), Timeline(0, 0, 7, 5, 0), 0)}  # horizon 4
    plan = um.UnitPlan.build(plans, 0, keep_units=True)
    a, b = plan.ranked_metric[0].tolist()  # the metrics of rank 0 and 1
    assert [plan.metric_names[a], plan.metric_names[b]] == sorted([metrics[3].name, metrics[1].name])
    rows = [
        ("e", "u1", 0, "a", True, [(0, 0, 5, 0, 1), (0, 2, 7, 0, 0), (0, 3, 1, 0, 0), (0, 5, 2, 0, 0)]),
        ("e", "u1", 0, "a", True, [(1, 1, 4, 1, 0)]),
        ("e", "u2", 1, "b", True, [(0, 1, 1, 0, 0)]),
        ("e", "u2", 4, "a", False, [(0, 4, 0, 0, 0), (0, 6, 3, 0, 0)]),
        ("e", "u3", 2, "b", True, []),  # a segment without rows is kept too: a rerun reads its segments there
    ]  # fmt: skip
    units = um._Units(plan, _kept_table(rows))
    written = pa.Table.from_batches(list(units.kept_rows(units.kept)))
    assert set(written["part"].to_pylist()) == {um.UNITS}
    segments = {(r["unit_id"], r["seg_start"]): (r["first_segment"], r["seg_end"], len(r["rows"]))
                for r in written.to_pylist()}  # fmt: skip
    assert segments == {("u1", 0): (True, None, 3 * 32), ("u2", 1): (True, None, 32), ("u2", 4): (False, None, 64),
                        ("u3", 2): (True, None, 0)}  # fmt: skip
    back = _read_back(plan, written)
    assert _values(back) == _values(units)
    entries = sorted((back.unit_ids[u].as_py(), int(m), int(c))
                     for u, m, c in zip(back.kept.unit, back.kept.metric, back.kept.entry, strict=True))  # fmt: skip
    assert entries == sorted([("u1", a, 3), ("u1", a, 5), ("u1", b, 3), ("u2", a, 3), ("u2", a, 4), ("u2", a, 6)])
    assert _read_back(plan, written.slice(0, 0)).kept.unit.size == 0


def test_packed_rows_that_are_not_whole_are_refused() -> None:
    records = np.zeros(2, um.ROW)
    values = pa.array([records.tobytes()[:-3]], pa.binary())
    with pytest.raises(ValueError, match="not whole"):
        tf.unpacked_records(pa.chunked_array([values]), um.ROW)


@pytest.mark.parametrize("seed", range(3))
def test_segments_from_exposures_are_those_of_the_frames(spark: SparkSession, seed: int) -> None:
    # Two experiments with their own timelines; units exposed several times, on several days,
    # some received late (after the freeze), some in more than one variant; variants whose
    # byte order is not their order of appearance ("é" sorts after "z", "B" before "a").
    rng = random.Random(seed)
    day = 86_400_000_000
    timelines = {"e1": Timeline.build(0, 12 * day, 3 * day), "e2": Timeline.build(4 * day, 12 * day, 3 * day)}
    plans = {key: ExperimentPlan(key, tuple(load_catalog(DEFAULT_CATALOG).metrics), timeline, timeline.day0_us)
             for key, timeline in timelines.items()}  # fmt: skip
    variants = ["é", "z", "a", "B"]
    rows = []
    for index in range(300):
        key, unit = rng.choice(["e1", "e2"]), f"u{rng.randint(0, 60)}"
        ts = timelines[key].day0_us + rng.randint(0, 11 * day)
        received = ts + rng.choice([0, 0, 0, 2 * day, 6 * day])
        variant = variants[(int(unit[1:]) + int(key[1:])) % 3] if rng.random() < 0.9 else rng.choice(variants)
        rows.append((unit, key, ts, received, variant, index))
    ddl = "unit_id string, experiment string, ts_us long, received_us long, variant string, event_id long"
    exposures = spark.createDataFrame(rows, ddl)
    frame = tf.unit_segments(tf.with_entry_index(exposures, tf.timeline_frame(spark, timelines)))
    expected = sorted(tuple(row[name] for name in um.SEGMENT_COLUMNS) for row in frame.collect())
    table = pa.table({name: [row[i] for row in rows] for i, name in enumerate(um.EXPOSURE_COLUMNS)})
    table = table.cast(pa.schema([(name, um.pa_schema(um.INPUT_DDL).field(name).type) for name in um.EXPOSURE_COLUMNS]))
    found = um.exposure_segments(um.UnitPlan.build(plans, 0), table).to_pylist()
    assert sorted(tuple(row[name] for name in um.SEGMENT_COLUMNS) for row in found) == expected
    assert any(not row[-1] for row in expected) and any(row[3] is not None for row in expected)
