"""Thin edges of the job: which lake files to read, reading them, publishing results."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession

from services.common.durable import remove_stale_temps, write_bytes_atomic
from services.common.results import ResultsDocument
from services.metrics import lake

EXPOSURE_DDL = (
    "event_id string, experiment string, variant string, unit_id string, timestamp timestamp, "
    "received_at timestamp, attributes map<string,string>, kafka_partition int, kafka_offset long"
)
EVENT_DDL = (
    "event_id string, name string, unit_id string, timestamp timestamp, received_at timestamp, "
    "value double, properties string, kafka_partition int, kafka_offset long"
)


def read_parquet(spark: SparkSession, files: Sequence[Path], ddl: str) -> DataFrame:
    """Exactly these files (never a directory scan), with the lake schema."""
    if not files:
        return spark.createDataFrame([], ddl)
    return spark.read.schema(ddl).parquet(*[str(path) for path in files])


def exposure_files(lake_dir: Path, experiment: str, as_of: date) -> list[Path]:
    """The experiment's exposure partitions dated up to as-of (a listing; other experiments untouched)."""
    return lake.exposure_files(lake_dir, experiment, date.min, as_of)


def event_files(lake_dir: Path, first_exposure: date, lookback_days: int, as_of: date) -> list[Path]:
    """Event partitions that can affect the result: the CUPED lookback before the first
    exposure's date through as-of's date."""
    return lake.event_files(lake_dir, first_exposure - timedelta(days=lookback_days), as_of)


def is_exposure_file(path: Path) -> bool:
    """Exposure partitions are per experiment (`.../experiment=<key>/part-*.parquet`)."""
    return path.parent.name.startswith("experiment=")


INSTANT_COLUMNS = ("timestamp", "received_at")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def latest_instant_us(path: Path) -> int | None:
    """The latest event time or receipt of any row of this lake file, from its Parquet
    statistics (no row is read); None when the file cannot tell (no statistics, unreadable)."""
    try:
        metadata = pq.read_metadata(path)
    except (OSError, ValueError):
        return None
    latest = None
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        columns = {group.column(j).path_in_schema: group.column(j) for j in range(group.num_columns)}
        for name in INSTANT_COLUMNS:
            column = columns.get(name)
            statistics = column.statistics if column is not None else None
            if statistics is None or not statistics.has_min_max or not isinstance(statistics.max, datetime):
                return None
            moment = statistics.max if statistics.max.tzinfo else statistics.max.replace(tzinfo=UTC)
            value = (moment - EPOCH) // timedelta(microseconds=1)
            latest = value if latest is None else max(latest, value)
    return latest


STALE_TEMP_SECONDS = 3600.0  # far longer than writing one document takes


def results_paths(results_dir: Path, experiment: str, computed_at: str) -> tuple[Path, Path]:
    base = results_dir / experiment
    return base / "latest.json", base / "history" / f"{computed_at}.json"


def publish(results_dir: Path, document: ResultsDocument) -> Path:
    """History first, then latest.json; each is written atomically, so readers never see
    a partial document and a crash keeps the previous latest.json. Temporary files that a
    killed run left behind (older than STALE_TEMP_SECONDS) are removed on the way."""
    latest, history = results_paths(results_dir, document.experiment, document.computed_at)
    data = document.to_json()
    write_bytes_atomic(history, data)
    write_bytes_atomic(latest, data)
    for directory in (latest.parent, history.parent):
        remove_stale_temps(directory, STALE_TEMP_SECONDS)
    return latest
