"""The small rerun on the driver (`localrerun`): its de-duplication of the new events is
Spark's (`transforms.distinct_events`), row for row; the rest is checked end to end in
`test_job_unit_state` (documents and kept state against the Spark way and from scratch)."""

from __future__ import annotations

import random
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from services.metrics.job import localrerun as lr
from services.metrics.job import transforms as tf
from services.metrics.job import unitmath as um

ROWS_DDL = ("event_id string, unit_id string, name string, value double, ts_us long, received_us long, "
            "kafka_partition int, kafka_offset long")  # fmt: skip


def _rows(spark: SparkSession, rows: list[tuple[Any, ...]]) -> DataFrame:
    return tf.local_frame(spark, rows, ROWS_DDL)


def _by_spark(frame: DataFrame) -> list[dict[str, Any]]:
    values = [column.alias(name) for name, column in um.event_values().items()]
    table = tf.distinct_events(frame, 3).select(*lr._EVENT_COLUMNS, *values).toArrow()
    return sorted(table.to_pylist(), key=lambda row: (str(row["unit_id"]), row["id_hash"]))


def _here(frame: DataFrame) -> list[dict[str, Any]] | None:
    values = [column.alias(name) for name, column in um.event_values().items()]
    table = lr._distinct(frame.select(*lr._ROW_COLUMNS, tf.id_hash().alias("id_hash"), *values).toArrow())
    return None if table is None else sorted(table.to_pylist(), key=lambda row: (str(row["unit_id"]), row["id_hash"]))


def test_the_driver_keeps_the_copy_spark_keeps(spark: SparkSession) -> None:
    """Random rows: ids repeated (SDK retries, received later, on another partition), some
    under another unit or with another name or time, units missing, values with and without
    decimals: the same winners, copies, last receipts, consistency, hashes and values."""
    rng = random.Random(7)
    rows = []
    for offset in range(400):
        event = rng.randrange(120)
        unit = None if event % 17 == 0 else f"u{event % 9 if rng.random() > 0.05 else rng.randrange(9)}"
        name = "purchase" if rng.random() > 0.04 else "page_load"
        ts = 1_000_000 * (event % 5) + (0 if rng.random() > 0.04 else 7)
        value = rng.choice([None, 1.5, 10.25, 0.1, 123456.789, -3.0, 1e-7])
        rows.append((f"e{event}", unit, name, value, ts, rng.randrange(50) * 1_000, rng.randrange(3), offset))
    frame = _rows(spark, rows)
    found = _here(frame)
    assert found is not None
    assert found == _by_spark(frame)
    assert any(row["copies"] > 1 for row in found) and not all(row["consistent"] for row in found)


def test_copies_that_tie_on_their_receipt_are_left_to_spark(spark: SparkSession) -> None:
    """Two copies with the same receipt, partition and offset (a row written twice): which
    one Spark keeps depends on the rest of the row, so the driver does not pick."""
    rows = [("e1", "u1", "purchase", 1.0, 5, 10, 0, 3), ("e1", "u1", "purchase", 2.0, 5, 10, 0, 3)]
    assert _here(_rows(spark, rows)) is None
    assert _here(_rows(spark, [("e1", "u1", "purchase", 1.0, 5, 10, None, 3)])) is None
    assert _here(_rows(spark, [(None, "u1", "purchase", 1.0, 5, 10, 0, 3)])) is None
    empty = lr._distinct(_rows(spark, []).select(*lr._ROW_COLUMNS, tf.id_hash().alias("id_hash"), *(
        column.alias(name) for name, column in um.event_values().items())).toArrow())  # fmt: skip
    assert empty is not None and empty.num_rows == 0 and empty.column_names == [*lr._EVENT_COLUMNS, "amount", "valued"]
