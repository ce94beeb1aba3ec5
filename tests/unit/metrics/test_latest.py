"""The latest-snapshot transforms (slices, quantiles) on tiny frames with values worked out by hand."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from pyspark.sql import SparkSession

from services.common.catalog import parse_catalog
from services.common.results import MISSING_SLICE, OTHER_SLICE
from services.metrics.job import latest as lt
from services.metrics.job import transforms as tf

CATALOG = parse_catalog("""
metrics:
  - {name: p30, type: quantile, quantile: 0.3, event: page_load, value: value, owner: test}
""")


VALUES_DDL = ("experiment string, metric string, dimension string, slice string, variant string, unit_id string, "
              "v decimal(20,6), count long")  # fmt: skip


@pytest.mark.parametrize("counted", [False, True], ids=["one-row-each", "counted"])
def test_quantile_blocks_by_hand(spark: SparkSession, counted: bool) -> None:
    # Ten values over three units, sorted 1 2 3 3 4 5 6 8 9 10: x_(ceil(10 * 0.3)) = x_(3) = 3
    # (in floating point 10 * 0.3 is 3.0000000000000004, whose ceiling would pick x_(4)).
    # `counted`: a unit's equal values come as one row with their count, as the per-unit arrays give them.
    per_unit = {"u1": [1, 3, 3], "u2": [2, 5, 8, 9], "u3": [10, 4, 6]}
    rows = [("e", "p30", "", "", "control", unit, Decimal(v), 1) for unit, values in per_unit.items() for v in values]
    if counted:
        rows = [(*key, rows.count((*key, 1))) for key in dict.fromkeys(row[:-1] for row in rows)]
        assert len(rows) == 9
    values = spark.createDataFrame(rows, VALUES_DDL)
    probabilities = lt.quantile_probabilities({"e": CATALOG.metrics})
    [row] = [r.asDict() for r in lt.quantile_blocks(values, probabilities, 2).collect()]
    lower, upper = lt.outer_window_probabilities(0.3, 10)
    assert (row["n_events"], row["value"], row["probability"]) == (10, Decimal(3), 0.3)
    assert (row["lower_probability"], row["upper_probability"]) == (lower, upper)
    assert lower < 0.1 and 0.5 < upper < 0.6  # ranks 1 and ceil(5.84) = 6
    assert (row["lower_value"], row["upper_value"]) == (Decimal(1), Decimal(5))
    below, sizes = [3, 1, 0], [3, 4, 3]  # S_u: events <= 3 of u1, u2, u3; M_u
    assert row["events_below"] == sum(below) == 4  # the tie at 3 counts twice
    assert row["events_below_squares"] == sum(s * s for s in below)
    assert row["events_squares"] == sum(m * m for m in sizes)
    assert row["events_products"] == sum(s * m for s, m in zip(below, sizes, strict=True))


@pytest.mark.parametrize(("probability", "n_events", "rank"), [(0.3, 10, 3), (0.3, 11, 4), (0.9, 1, 1), (0.5, 4, 2),
                                                               (0.999, 1000, 999), (1e-05, 3, 1)])  # fmt: skip
def test_the_quantile_rank_is_exact(spark: SparkSession, probability: float, n_events: int, rank: int) -> None:
    catalog = parse_catalog(f"""
metrics:
  - {{name: q, type: quantile, quantile: {probability!r}, event: e, value: value, owner: test}}
""")
    rows = [("e", "q", "", "", "a", f"u{i}", Decimal(i + 1), 1) for i in range(n_events)]
    values = spark.createDataFrame(rows, VALUES_DDL)
    [row] = lt.quantile_blocks(values, lt.quantile_probabilities({"e": catalog.metrics}), 2).collect()
    assert row["value"] == Decimal(rank)


def test_slice_labels_keep_the_top_20_values(spark: SparkSession) -> None:
    # v00..v21: v00 has 3 units, v01..v21 one each (ties: the smaller value wins), so v01..v19
    # keep their slices and v20, v21 go to __other__ with the reserved-looking value.
    members = [("e", "u-a", "control", "country", "v00"), ("e", "u-b", "control", "country", "v00"),
               ("e", "u-c", "treatment", "country", "v00")]  # fmt: skip
    members += [("e", f"u{i}", "control", "country", f"v{i:02d}") for i in range(1, 22)]
    members += [("e", "u-r", "control", "country", OTHER_SLICE), ("e", "u-m", "control", "country", None)]
    members += [("e", "u-a", "control", "device", None)]
    frame = spark.createDataFrame(members, "experiment string, unit_id string, variant string, dimension string, "
                                           "raw string")  # fmt: skip
    labels = {(r["unit_id"], r["dimension"]): r["slice"] for r in lt.slice_labels(frame).collect()}
    assert labels[("u-a", "country")] == "v00" and labels[("u19", "country")] == "v19"
    assert labels[("u20", "country")] == labels[("u21", "country")] == labels[("u-r", "country")] == OTHER_SLICE
    assert labels[("u-m", "country")] == labels[("u-a", "device")] == MISSING_SLICE
    counts = {(r["slice"], r["variant"]): r["units"] for r in lt.slice_units(lt.slice_labels(frame)).collect()
              if r["dimension"] == "country"}  # fmt: skip
    assert counts[("v00", "control")] == 2 and counts[("v00", "treatment")] == 1
    assert counts[(OTHER_SLICE, "control")] == 3 and counts[(MISSING_SLICE, "control")] == 1


def brute_force_block(p: float, rows: list[tuple[str, int, int]]) -> dict[str, object]:
    """A block from its definition: every event written out, sorted, x_(k) read off, S_u and M_u counted."""
    events = sorted(v for _, v, count in rows for _ in range(count))
    n = len(events)
    rank = max(1, math.ceil(Fraction(repr(p)) * n))  # exact: p as its decimal literal
    quantile = events[rank - 1]
    lower_p, upper_p = lt.outer_window_probabilities(p, n)
    lower, upper = (events[min(n, max(1, math.ceil(n * q))) - 1] for q in (lower_p, upper_p))
    units = sorted({unit for unit, _, _ in rows})
    below = [sum(c for u, v, c in rows if u == unit and v <= quantile) for unit in units]
    sizes = [sum(c for u, _, c in rows if u == unit) for unit in units]
    return {"n_events": n, "probability": p, "lower_probability": lower_p, "upper_probability": upper_p,
            "value": quantile, "lower_value": lower, "upper_value": upper, "events_below": sum(below),
            "events_below_squares": sum(s * s for s in below), "events_squares": sum(m * m for m in sizes),
            "events_products": sum(s * m for s, m in zip(below, sizes, strict=True))}  # fmt: skip


def random_rows(rng: random.Random, n_rows: int) -> list[tuple[str, int, int]]:
    """(unit, value in millionths, count): few distinct values (ties), counts above one, negative values."""
    distinct = [rng.randint(-5_000_000, 50_000_000) for _ in range(rng.randint(1, 12))]
    return [(f"u{rng.randint(0, 9)}", rng.choice(distinct), rng.choice([1, 1, 2, 7])) for _ in range(n_rows)]


@pytest.mark.parametrize("exact_counts", [lt.EXACT_COUNTS, 0], ids=["int64", "python-integers"])
@pytest.mark.parametrize("seed", range(40))
def test_a_block_equals_its_definition(monkeypatch: pytest.MonkeyPatch, seed: int, exact_counts: int) -> None:
    # `block` (numpy: one stable sort, running counts, bincount per unit) against every event
    # written out; `exact_counts` 0 takes the Python-integer path that very large groups use.
    monkeypatch.setattr(lt, "EXACT_COUNTS", exact_counts)
    rng = random.Random(seed)
    p = rng.choice([0.5, 0.3, 0.9, 0.999, 0.01, 0.25])
    rows = random_rows(rng, rng.randint(1, 60))
    codes = {unit: code for code, unit in enumerate(sorted({r[0] for r in rows}))}
    units = np.array([codes[r[0]] for r in rows], np.int64)
    values, counts = (np.array([r[i] for r in rows], np.int64) for i in (1, 2))
    row = lt.block({("e", "q"): (p, *Fraction(repr(p)).as_integer_ratio())}, ["e", "q", "", "", "a"], units, values,
                   counts)  # fmt: skip
    got = dict(zip(lt.BLOCK_SCHEMA.names, row, strict=True))
    assert {name: got[name] for name in brute_force_block(p, rows)} == brute_force_block(p, rows)
    assert [got[name] for name in lt.QUANTILE_GROUP] == ["e", "q", "", "", "a"]


PACKS_DDL = "experiment string, metric string, variant string, values binary"


def packs(group: tuple[str, ...], rows: list[tuple[str, int, int]], parts: int) -> list[tuple[object, ...]]:
    """A group's (unit, value, count) rows as the per-unit arrays pack them: units spread over
    `parts` partitions, each partition's rows one packed value with its units numbered locally."""
    by_part: dict[int, list[tuple[str, int, int]]] = {}
    for row in rows:
        by_part.setdefault(int(row[0][1:]) % parts, []).append(row)
    found = []
    for part_rows in by_part.values():
        local = {unit: index for index, unit in enumerate(sorted({unit for unit, _, _ in part_rows}, reverse=True))}
        records = np.array([(local[unit], v, count) for unit, v, count in part_rows], lt.VALUE_RECORD)
        found.append((group[0], group[1], group[4], tf.packed_records(records, np.array([0]))[0].as_py()))
    return found


def test_blocks_of_several_groups_equal_their_definition(spark: SparkSession) -> None:
    # Through Spark: several experiments, metrics, slices and variants at once (32 groups in three
    # partitions, so each partition splits several groups), each group's values in six-decimal
    # units, back as decimals. The whole-variant groups of e2 come packed as the per-unit arrays
    # give them (several partitions of units each, local unit numbers that repeat across them),
    # and e1's treatment p50 both ways at once (half its units each way).
    rng = random.Random(7)
    catalog = parse_catalog("""
metrics:
  - {name: p50, type: quantile, quantile: 0.5, event: e, value: value, owner: test}
  - {name: p90, type: quantile, quantile: 0.9, event: e, value: value, owner: test}
""")
    groups = [(e, m, d, s, v) for e in ("e1", "e2") for m in ("p50", "p90") for d, s in (("", ""), ("country", "se"))
              for v in ("control", "treatment")]  # fmt: skip
    drawn = {group: random_rows(rng, rng.randint(1, 40)) for group in groups}
    rows, packed = [], []
    for group, drawn_rows in drawn.items():
        if group[0] == "e2" and group[2] == "":
            packed += packs(group, drawn_rows, rng.randint(1, 4))
            continue
        single = drawn_rows
        if group == ("e1", "p50", "", "", "treatment"):
            single = [row for row in drawn_rows if int(row[0][1:]) % 2]
            packed += packs(group, [row for row in drawn_rows if not int(row[0][1:]) % 2], 2)
        rows += [(*group, unit, Decimal(v).scaleb(-6), count) for unit, v, count in single]
    probabilities = lt.quantile_probabilities({"e1": catalog.metrics, "e2": catalog.metrics})
    values, packed_frame = spark.createDataFrame(rows, VALUES_DDL), spark.createDataFrame(packed, PACKS_DDL)
    blocks = lt.quantile_blocks(values, probabilities, 3, packed_frame).collect()
    assert len(blocks) == len(groups)
    for row in blocks:
        group = tuple(row[name] for name in lt.QUANTILE_GROUP)
        expected = brute_force_block(probabilities[group[:2]][0], drawn[group])
        for name in ("value", "lower_value", "upper_value"):
            expected[name] = Decimal(expected[name]).scaleb(-6)
        assert {name: row[name] for name in expected} == expected, group
