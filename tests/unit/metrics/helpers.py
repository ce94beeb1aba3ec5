"""Shared test helpers: write topic-format records into a lake the way ingest does."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from services.metrics import lake
from services.metrics.ingest import PartitionKey, write_partition
from services.metrics.records import Row, parse_message


def write_lake(lake_dir: Path, exposures: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]],
               *, files_per_partition: int = 2, first_offset: int = 0) -> int:  # fmt: skip
    """Records -> Parquet files (several per partition, as micro-batches would); returns rows written."""
    written = 0
    for topic, records in ((lake.EXPOSURES_TOPIC, exposures), (lake.EVENTS_TOPIC, events)):
        partitions: dict[PartitionKey, list[Row]] = defaultdict(list)
        for offset, record in enumerate(records, start=first_offset):
            row = parse_message(topic, orjson.dumps(record))
            row["kafka_partition"], row["kafka_offset"] = 0, offset
            experiment = row["experiment"] if topic == lake.EXPOSURES_TOPIC else None
            partitions[(topic, row["timestamp"].date(), experiment)].append(row)
        for key, rows in partitions.items():
            size = max(1, -(-len(rows) // files_per_partition))
            for start in range(0, len(rows), size):
                write_partition(lake_dir, key, rows[start : start + size])
            written += len(rows)
    return written
