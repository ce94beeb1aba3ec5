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
from assay import dimensions

COMMON_FIELDS = ("event_id", "unit_id", "timestamp", "received_at")
EXPOSURE_FIELDS = (*COMMON_FIELDS, "experiment", "variant", "attributes")
# An exposure's optional `attributes`: the unit's values of the experiment's dimensions
# (docs/api.md). String keys and values, bounded so one exposure stays small; the limits are
# the SDK's (`assay.dimensions`), which leaves out what would break them.
MAX_ATTRIBUTES = dimensions.MAX_ATTRIBUTES
MAX_ATTRIBUTE_VALUE_LENGTH = dimensions.MAX_ATTRIBUTE_VALUE_LENGTH
ATTRIBUTE_NAME = dimensions.ATTRIBUTE_NAME  # as targeting attributes (assay.models), matched whole


def _not_utf8(text: str) -> bool:
    """A lone surrogate (a JSON escape like "\\ud800") cannot be encoded, stored or sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def attributes_problem(attributes: object) -> str | None:
    """Why `attributes` cannot be carried (None when it can; null means none)."""
    if attributes is None:
        return None
    if not isinstance(attributes, dict):
        return "'attributes' must be an object of strings"
    if len(attributes) > MAX_ATTRIBUTES:
        return f"'attributes' has {len(attributes)} keys; at most {MAX_ATTRIBUTES}"
    for name, value in attributes.items():
        if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
            return f"attribute name {str(name)[:64]!r} must match ^{ATTRIBUTE_NAME.pattern}$"
        if not isinstance(value, str):
            return f"attribute {name!r} must be a string, not {type(value).__name__}"
        if len(value) > MAX_ATTRIBUTE_VALUE_LENGTH:
            return f"attribute {name!r} is longer than {MAX_ATTRIBUTE_VALUE_LENGTH} characters"
        if _not_utf8(value):
            return f"attribute {name!r} is not valid UTF-8 text (a lone surrogate)"
    return None


EVENT_FIELDS = (*COMMON_FIELDS, "name", "value", "properties")


def message_key(unit_id: str) -> bytes:
    """Keyed by unit, so one unit's messages stay in order on one partition."""
    return unit_id.encode("utf-8")


def exposure_message(
    event_id: str, experiment: str, variant: str, unit_id: str, timestamp: str, received_at: str,
    attributes: dict[str, str] | None = None,
) -> bytes:  # fmt: skip
    """`attributes` is written only when given, so exposures without it keep their old bytes."""
    value: dict[str, Any] = {
        "event_id": event_id, "experiment": experiment, "variant": variant,
        "unit_id": unit_id, "timestamp": timestamp, "received_at": received_at,
    }  # fmt: skip
    if attributes:
        value["attributes"] = attributes
    return orjson.dumps(value)


def event_message(
    event_id: str, name: str, unit_id: str, timestamp: str, value: float | None,
    properties: dict[str, Any], received_at: str,
) -> bytes:  # fmt: skip
    return orjson.dumps({
        "event_id": event_id, "name": name, "unit_id": unit_id, "timestamp": timestamp,
        "value": value, "properties": properties, "received_at": received_at,
    })  # fmt: skip
