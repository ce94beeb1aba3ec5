"""`io.latest_instant_us`: the latest event time or receipt of a lake file from its Parquet
statistics alone. A rerun takes the kept exposure summaries only when this says no row of
an unchanged file lies after the kept as-of, so a file that cannot tell must say None."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from services.metrics import lake
from services.metrics.job import io


def micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def exposure_rows(times: list[tuple[datetime, datetime]]) -> pa.Table:
    count = len(times)
    return pa.table({
        "event_id": [f"e{i}" for i in range(count)], "experiment": ["x"] * count, "variant": ["a"] * count,
        "unit_id": [f"u{i}" for i in range(count)], "timestamp": [ts for ts, _ in times],
        "received_at": [received for _, received in times], "attributes": [None] * count,
        "kafka_partition": [0] * count, "kafka_offset": list(range(count)),
    }, schema=lake.EXPOSURE_SCHEMA)  # fmt: skip


def test_the_latest_of_event_time_and_receipt_over_every_row_group(tmp_path: Path) -> None:
    early, late_ts, late_receipt = (datetime(2026, 10, day, 5, 6, 7, 123456, tzinfo=UTC) for day in (1, 9, 8))
    rows = exposure_rows([(early, early), (late_ts, early), (early, late_receipt), (early, early)])
    path = tmp_path / "part.parquet"
    pq.write_table(rows, path, row_group_size=2)
    assert pq.read_metadata(path).num_row_groups == 2
    assert io.latest_instant_us(path) == micros(late_ts)
    pq.write_table(rows.slice(2), path)  # the late event time is gone: the late receipt is the latest
    assert io.latest_instant_us(path) == micros(late_receipt)


def test_a_file_that_cannot_tell_gives_none(tmp_path: Path) -> None:
    moment = datetime(2026, 10, 1, tzinfo=UTC)
    no_statistics = tmp_path / "bare.parquet"
    pq.write_table(exposure_rows([(moment, moment)]), no_statistics, write_statistics=False)
    assert io.latest_instant_us(no_statistics) is None
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    assert io.latest_instant_us(garbage) is None
    assert io.latest_instant_us(tmp_path / "vanished.parquet") is None
    empty = tmp_path / "empty.parquet"
    pq.write_table(exposure_rows([]), empty)
    assert io.latest_instant_us(empty) is None  # no row group: nothing is known, not "nothing is late"
