"""The latest-snapshot transforms (slices, quantiles) on tiny frames with values worked out by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pyspark.sql import SparkSession

from services.common.catalog import parse_catalog
from services.common.results import MISSING_SLICE, OTHER_SLICE
from services.metrics.job import latest as lt

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
    probabilities = lt.quantile_probabilities(spark, {"e": CATALOG.metrics})
    [row] = [r.asDict() for r in lt.quantile_blocks(values, probabilities).collect()]
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
    [row] = lt.quantile_blocks(values, lt.quantile_probabilities(spark, {"e": catalog.metrics})).collect()
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
