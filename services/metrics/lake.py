"""The Parquet lake: layout, schemas and which files a computation needs.

    lake/assay.exposures/date=<event date>/experiment=<key>/part-*.parquet
    lake/assay.events/date=<event date>/part-*.parquet
    lake/_quarantine/<topic>-<ingest date>.jsonl

The event date is the UTC date of the item's `timestamp`. Exposures carry a second
partition level, the experiment, so a job lists (never reads) the date directories and
opens only its own experiment's files. Events are not tied to an experiment.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

from services.common.topics import EVENTS_TOPIC, EXPOSURES_TOPIC, TOPICS

QUARANTINE_DIR = "_quarantine"
DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")

_TIME = pa.timestamp("us", tz="UTC")
ATTRIBUTES_TYPE = pa.map_(pa.string(), pa.string())
_AUDIT_FIELDS = [pa.field("kafka_partition", pa.int32()), pa.field("kafka_offset", pa.int64())]
EXPOSURE_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("experiment", pa.string(), nullable=False),
    pa.field("variant", pa.string(), nullable=False),
    pa.field("unit_id", pa.string(), nullable=False),
    pa.field("timestamp", _TIME, nullable=False),
    pa.field("received_at", _TIME, nullable=False),
    # the unit's dimension values (null: none sent); files written before it lack the column,
    # and readers with the full schema see null there
    pa.field("attributes", ATTRIBUTES_TYPE),
    *_AUDIT_FIELDS,
])  # fmt: skip
EVENT_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("name", pa.string(), nullable=False),
    pa.field("unit_id", pa.string(), nullable=False),
    pa.field("timestamp", _TIME, nullable=False),
    pa.field("received_at", _TIME, nullable=False),
    pa.field("value", pa.float64()),
    pa.field("properties", pa.string()),  # the JSON object as text
    *_AUDIT_FIELDS,
])  # fmt: skip
SCHEMAS = {EXPOSURES_TOPIC: EXPOSURE_SCHEMA, EVENTS_TOPIC: EVENT_SCHEMA}


def partition_dir(lake: Path, topic: str, day: date, experiment: str | None = None) -> Path:
    directory = lake / topic / f"date={day.isoformat()}"
    return directory / f"experiment={experiment}" if experiment is not None else directory


def new_file_name() -> str:
    """Unique and roughly time-ordered; re-ingested duplicates land in new files (dedup is by event_id)."""
    return f"part-{time.time_ns() // 1_000_000:013d}-{uuid.uuid4().hex[:12]}.parquet"


def quarantine_path(lake: Path, topic: str, day: date) -> Path:
    return lake / QUARANTINE_DIR / f"{topic}-{day.isoformat()}.jsonl"


def parquet_files(directory: Path) -> list[Path]:
    """Published data files of one partition, sorted; temporary ('.'-prefixed) files are skipped."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith((".", "_")))


def partition_dates(lake: Path, topic: str) -> list[date]:
    """Dates that have a partition directory (a directory listing; no file is opened)."""
    root = lake / topic
    if not root.is_dir():
        return []
    found = (DATE_DIR.match(entry.name) for entry in root.iterdir() if entry.is_dir())
    return sorted(date.fromisoformat(match.group(1)) for match in found if match)


def experiment_exposure_dates(lake: Path, experiment: str) -> list[date]:
    return [
        day for day in partition_dates(lake, EXPOSURES_TOPIC)
        if partition_dir(lake, EXPOSURES_TOPIC, day, experiment).is_dir()
    ]  # fmt: skip


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def exposure_files(lake: Path, experiment: str, first: date, last: date) -> list[Path]:
    return [
        path for day in experiment_exposure_dates(lake, experiment) if first <= day <= last
        for path in parquet_files(partition_dir(lake, EXPOSURES_TOPIC, day, experiment))
    ]  # fmt: skip


def event_files(lake: Path, first: date, last: date) -> list[Path]:
    return [path for day in days_between(first, last) for path in parquet_files(partition_dir(lake, EVENTS_TOPIC, day))]


def stale_temp_files(lake: Path) -> list[Path]:
    """Temporary files a crashed writer left behind (never read; safe to delete)."""
    return [p for topic in TOPICS for p in (lake / topic).glob("date=*/**/.part-*.tmp")]
