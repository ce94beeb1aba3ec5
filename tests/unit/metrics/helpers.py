"""Shared test helpers: write topic-format records into a lake the way ingest does."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from assay.timefmt import format_rfc3339 as rfc3339

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


COUNTRIES = tuple(f"c{index:02d}" for index in range(25))  # more than the 20 values a dimension keeps


def _choose(rng: random.Random, values: Sequence[str]) -> str:
    """Skewed (the first values far more often), so the top values are clear and ties still occur."""
    return values[min(int(rng.expovariate(0.18)), len(values) - 1)]


def with_attributes(exposures: Sequence[dict[str, Any]], seed: int, late_after: str | None = None
                    ) -> list[dict[str, Any]]:  # fmt: skip
    """Exposures with `attributes` (country, device; sometimes absent or reserved-looking), the
    same for every copy of an event_id; plus, per few units, a second exposure at the very same
    time (the smaller event_id decides) and, when `late_after` is given, an earlier exposure
    received after it (it moves the unit's first exposure and its segment)."""
    result = []
    units: dict[str, dict[str, Any]] = {}
    for record in exposures:
        rng = random.Random(f"{seed}:{record['event_id']}")
        unit = units.setdefault(record["unit_id"], record)
        roll = rng.random()
        if roll < 0.1:
            attributes = None
        elif roll < 0.12:
            attributes = {"country": "__other__", "device": "web"}
        else:
            country = _choose(random.Random(f"{seed}:{record['unit_id']}"), COUNTRIES)
            attributes = {"country": country if roll < 0.85 else _choose(rng, COUNTRIES)}
            if rng.random() < 0.7:
                attributes["device"] = rng.choice(("ios", "android", "web"))
        result.append({**record, "attributes": attributes} if attributes else dict(record))
        if unit is record and rng.random() < 0.05:  # a tie at the first exposure's time
            result.append({**record, "event_id": f"0-{record['event_id']}", "attributes": {"country": "c24"}})
    if late_after is not None:
        received = rfc3339(datetime.fromisoformat(late_after) + timedelta(hours=2))
        for index, (key, first) in enumerate(sorted(units.items())):
            if index % 13 == 0:
                earlier = datetime.fromisoformat(first["timestamp"]) - timedelta(minutes=30)
                result.append({**first, "event_id": f"late-{key}", "received_at": received,
                               "timestamp": rfc3339(earlier),
                               "attributes": {"country": "c23", "device": "tv"}})  # fmt: skip
    return result


# Every metric type, windows, CUPED lookbacks and a quantile metric (the multi-experiment tests' catalog).
CATALOG_TEXT = """
metrics:
  - {name: conversion, type: proportion, event: purchase, window_hours: 36, cuped_lookback_days: 3, owner: test}
  - {name: revenue, type: mean, event: purchase, value: value, owner: test}
  - name: revenue_per_session
    owner: test
    type: ratio
    numerator: {event: purchase, value: value}
    denominator: {event: session_start}
    cuped_lookback_days: 5
  - {name: sessions, type: mean, event: session_start, cuped_lookback_days: 0, owner: test}
  - name: latency_ms
    owner: test
    type: ratio
    numerator: {event: page_load, value: value}
    denominator: {event: page_load}
    cuped_lookback_days: 7
  - {name: error_rate, type: proportion, event: client_error, window_hours: 24, owner: test}
  - {name: latency_p90, type: quantile, quantile: 0.9, event: page_load, value: value, owner: test}
"""
