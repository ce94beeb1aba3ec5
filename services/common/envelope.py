"""The Kafka message envelope (docs/api.md "Exposure service"): what the exposure service
produces and the metrics ingest parses. A message is keyed by `unit_id` (UTF-8) and its value
is a JSON object of the accepted item's fields plus `received_at`; timestamps are RFC 3339 as
written by `assay.timefmt.format_rfc3339`.

The exposure service builds values with `exposure_message` / `event_message`; the metrics
ingest (`services.metrics.records`) turns them into lake rows of exactly the fields named in
`EXPOSURE_FIELDS` / `EVENT_FIELDS` (tests/unit/common/test_envelope.py holds both sides to it).
"""

from __future__ import annotations

from typing import Any

import orjson

COMMON_FIELDS = ("event_id", "unit_id", "timestamp", "received_at")
EXPOSURE_FIELDS = (*COMMON_FIELDS, "experiment", "variant")
EVENT_FIELDS = (*COMMON_FIELDS, "name", "value", "properties")


def message_key(unit_id: str) -> bytes:
    """Keyed by unit, so one unit's messages stay in order on one partition."""
    return unit_id.encode("utf-8")


def exposure_message(
    event_id: str, experiment: str, variant: str, unit_id: str, timestamp: str, received_at: str
) -> bytes:
    return orjson.dumps({
        "event_id": event_id, "experiment": experiment, "variant": variant,
        "unit_id": unit_id, "timestamp": timestamp, "received_at": received_at,
    })  # fmt: skip


def event_message(
    event_id: str, name: str, unit_id: str, timestamp: str, value: float | None,
    properties: dict[str, Any], received_at: str,
) -> bytes:  # fmt: skip
    return orjson.dumps({
        "event_id": event_id, "name": name, "unit_id": unit_id, "timestamp": timestamp,
        "value": value, "properties": properties, "received_at": received_at,
    })  # fmt: skip
