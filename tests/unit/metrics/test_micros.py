"""The job's 64-bit fixed point (`transforms.MICROS`): the same digits as its decimals.

Per-unit values, their products and the per-variant sums are held as longs of millionths when
the session runs in ANSI mode; products are rounded half away from zero as Spark rounds a
decimal(38,6) product, sums come in two halves that cannot overflow, and anything a long
cannot hold makes the job compute that pass in decimals instead."""

from __future__ import annotations

import logging
import random
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from services.common.catalog import load_catalog
from services.metrics.job import aggregate, batch
from services.metrics.job import transforms as tf
from services.metrics.job.plan import Pass
from services.metrics.job.run import ExperimentSpec, JobOptions
from services.metrics.job.timeline import parse_instant
from services.metrics.settings import DEFAULT_CATALOG
from tests.generator import Generated, generate, rfc3339
from tests.unit.metrics.helpers import write_lake

CATALOG = load_catalog(DEFAULT_CATALOG)
ADDITIVE = tuple(metric.name for metric in CATALOG.metrics if metric.type != "quantile")


def rounded_product(left: int, right: int) -> int:
    """left x right / 10^6, half away from zero, in exact Python integers."""
    quotient, remainder = divmod(abs(left * right), tf.MICROS)
    rounded = quotient + (remainder >= tf.MICROS // 2)
    return rounded if left * right >= 0 else -rounded


def test_products_round_like_spark_decimals(spark: SparkSession) -> None:
    rng = random.Random(13)
    edge = tf.LONG_FACTOR
    pairs = [(1000, 500), (-1000, 500), (1000, -499), (-1, 1), (0, -5), (edge, edge), (-edge, edge),
             (edge + 1, edge), (edge + 1, -(edge + 1)), (10**12, 3), (-(10**15), 10**15), (2 * 10**18, -4)]  # fmt: skip
    for _ in range(3000):
        scale = rng.choice([10**3, 10**6, 10**9, edge, 10**12, 10**16, 9 * 10**18])
        pairs.append((rng.randint(-scale, scale), rng.randint(-scale, scale)))
    fits = [(a, b) for a, b in pairs if abs(rounded_product(a, b)) < 2**63]
    got = (
        tf.local_frame(spark, fits, "a long, b long").select("a", "b", tf.micro_product("a", "b").alias("p")).collect()
    )
    assert {(row.a, row.b): row.p for row in got} == {(a, b): rounded_product(a, b) for a, b in fits}
    # Spark's own decimal(28,6) x decimal(28,6), cast as the decimal path casts it, agrees.
    spark_rows = (
        tf.local_frame(spark, [(a, b) for a, b in fits if abs(a) < 10**22 and abs(b) < 10**22], "a long, b long")
        .selectExpr("a", "b", "CAST(CAST(a AS DECIMAL(28,0)) / 1000000 AS DECIMAL(28,6)) AS ad",
                    "CAST(CAST(b AS DECIMAL(28,0)) / 1000000 AS DECIMAL(28,6)) AS bd")
        .selectExpr("a", "b", "CAST(ad * bd AS DECIMAL(38,6)) AS p")
        .collect()
    )  # fmt: skip
    assert all(row.p * tf.MICROS == rounded_product(row.a, row.b) for row in spark_rows)


def test_the_job_computes_in_longs_when_overflow_raises(spark: SparkSession) -> None:
    assert aggregate.ansi_mode(spark), "Spark 4 runs in ANSI mode unless told otherwise"
    spark.conf.set("spark.sql.ansi.enabled", "false")
    try:
        assert not aggregate.ansi_mode(spark)
    finally:
        spark.conf.unset("spark.sql.ansi.enabled")
    assert aggregate.ansi_mode(spark)


def test_sums_in_halves_give_back_any_long() -> None:
    values = [0, 1, -1, 2**31, -(2**31), 2**32 - 1, 2**62 + 12345, -(2**63) + 1, 2**63 - 1]
    row: dict[str, int] = {}
    for index, name in enumerate(tf.SUMS):  # three rows of the same value, summed by halves
        value = values[index % len(values)]
        row[f"{name}_hi"], row[f"{name}_lo"] = 3 * (value >> tf.LOW_BITS), 3 * (value & ((1 << tf.LOW_BITS) - 1))
    decoded = tf.from_micros(dict(row))
    for index, name in enumerate(tf.SUMS):
        assert decoded[name] == Decimal(3 * values[index % len(values)]) / tf.MICROS
        assert decoded[name].as_tuple().exponent == -6


@pytest.fixture(scope="module")
def data() -> Generated:
    return generate(seed=17, units=300)


ORIGINAL_CONTRIBUTION_ROWS = aggregate.contribution_rows


def one_pass(spark: SparkSession, lake_dir: Path, data: Generated, monkeypatch: pytest.MonkeyPatch,
             micros: bool | None, arrays: bool = False) -> Pass:  # fmt: skip
    """The experiment's pass with its contribution rows computed as Spark frames in longs
    (falling back to decimals on overflow), in decimals, or (None) as the job chooses; with
    `arrays`, first in numpy (`unitmath`), which hands them to the frames on overflow."""
    with monkeypatch.context() as patched:
        patched.setattr(aggregate, "contribution_rows", partial(ORIGINAL_CONTRIBUTION_ROWS, micros=micros))
        spec = ExperimentSpec(data.truth.experiment, ("control", "treatment"), ADDITIVE)
        options = JobOptions(parse_instant(rfc3339(data.truth.final_as_of)), unit_arrays=arrays)
        return batch.compute_pass(spark, lake_dir, [spec], CATALOG, options)


def snapshots(outcome: Pass, key: str) -> list[object]:
    return list(outcome.results[key].snapshots)


def test_longs_and_decimals_give_the_same_snapshots(spark: SparkSession, tmp_path: Path, data: Generated,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    write_lake(tmp_path / "lake", data.exposures, data.events)
    key = data.truth.experiment
    longs = one_pass(spark, tmp_path / "lake", data, monkeypatch, True)
    decimals = one_pass(spark, tmp_path / "lake", data, monkeypatch, False)
    arrays = one_pass(spark, tmp_path / "lake", data, monkeypatch, None, arrays=True)
    assert snapshots(longs, key) == snapshots(decimals, key) == snapshots(arrays, key) and snapshots(longs, key)
    assert longs.results[key].quality == decimals.results[key].quality == arrays.results[key].quality


def test_values_beyond_longs_are_computed_in_decimals(spark: SparkSession, tmp_path: Path, data: Generated,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """A unit whose revenue adds up past 9.2e12 (longs of millionths hold less): the pass
    falls back to decimals and publishes what the decimal path computes; revenue of a few
    million per unit (beyond LONG_FACTOR) stays in longs, its products in decimal(38,0)."""
    key = data.truth.experiment
    exposed = sorted({row["unit_id"] for row in data.exposures if row["experiment"] == key})
    first = min(row["timestamp"] for row in data.exposures if row["experiment"] == key and row["unit_id"] == exposed[0])
    big = [{**data.events[0], "event_id": f"big-{i}", "name": "purchase", "unit_id": exposed[0], "value": 9.5e11,
            "timestamp": first, "received_at": first} for i in range(12)]  # fmt: skip
    rich = [{**data.events[0], "event_id": f"rich-{i}", "name": "purchase", "unit_id": exposed[1],
             "value": 500_000.123456, "timestamp": first, "received_at": first} for i in range(3)]  # fmt: skip
    write_lake(tmp_path / "rich", data.exposures, [*data.events, *rich])
    caplog.set_level(logging.INFO, logger="services.metrics.job")
    in_longs = one_pass(spark, tmp_path / "rich", data, monkeypatch, True)
    in_arrays = one_pass(spark, tmp_path / "rich", data, monkeypatch, None, arrays=True)
    assert not [message for message in caplog.messages if "64-bit sums would overflow" in message]
    in_decimals = snapshots(one_pass(spark, tmp_path / "rich", data, monkeypatch, False), key)
    assert snapshots(in_longs, key) == in_decimals == snapshots(in_arrays, key)

    write_lake(tmp_path / "big", data.exposures, [*data.events, *big])
    fallen_back = one_pass(spark, tmp_path / "big", data, monkeypatch, None)  # the job's own choice: longs first
    assert "64-bit sums would overflow; computing in decimals" in caplog.messages
    caplog.clear()
    from_arrays = one_pass(spark, tmp_path / "big", data, monkeypatch, None, arrays=True)  # numpy, then longs
    assert caplog.messages.count("64-bit sums would overflow; computing the deltas in Spark") == 1
    assert "64-bit sums would overflow; computing in decimals" in caplog.messages
    in_decimals = snapshots(one_pass(spark, tmp_path / "big", data, monkeypatch, False), key)
    assert snapshots(fallen_back, key) == in_decimals == snapshots(from_arrays, key)
    assert from_arrays.results[key].quality == fallen_back.results[key].quality
