"""Kafka message values -> lake rows. Anything unusable raises `Malformed` with a reason.

Values are the JSON objects the exposure service produces (`services.common.envelope`):
item fields plus `received_at`. Unknown extra fields are ignored; timestamps are RFC 3339
(or epoch milliseconds) and stored as UTC microseconds.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from services.common.envelope import attributes_problem
from services.common.topics import EVENTS_TOPIC, EXPOSURES_TOPIC

EXPERIMENT_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # docs/api.md; also a safe directory name
MAX_ID_LENGTH = 256
# Beyond this a value is a logging bug, and it would not fit the job's fixed-point type.
MAX_ABS_VALUE = 1e12
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Row = dict[str, Any]


class Malformed(ValueError):
    """The message cannot become a lake row; the text is the quarantine reason."""


def _text(item: dict[str, Any], field: str, limit: int = MAX_ID_LENGTH) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value:
        raise Malformed(f"'{field}' must be a non-empty string")
    if len(value) > limit:
        raise Malformed(f"'{field}' is longer than {limit} characters")
    return value


def parse_time(value: object, field: str) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            raise Malformed(f"'{field}' is out of range") from None
    if not isinstance(value, str):
        raise Malformed(f"'{field}' must be an RFC 3339 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Malformed(f"'{field}' is not RFC 3339: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise Malformed(f"'{field}' has no UTC offset: {value[:40]!r}")
    return moment.astimezone(UTC)


def _value(item: dict[str, Any]) -> float | None:
    value = item.get("value")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Malformed("'value' must be a number or null")
    if not math.isfinite(value) or abs(value) >= MAX_ABS_VALUE:
        raise Malformed(f"'value' must be finite and below {MAX_ABS_VALUE:g} in magnitude")
    return float(value)


def _properties(item: dict[str, Any]) -> str | None:
    properties = item.get("properties")
    if properties is None:
        return None
    if not isinstance(properties, dict):
        raise Malformed("'properties' must be an object or null")
    return orjson.dumps(properties, option=orjson.OPT_SORT_KEYS).decode()


def _common(item: dict[str, Any]) -> Row:
    return {
        "event_id": _text(item, "event_id"),
        "unit_id": _text(item, "unit_id"),
        "timestamp": parse_time(item.get("timestamp"), "timestamp"),
        "received_at": parse_time(item.get("received_at"), "received_at"),
    }


def parse_exposure(item: dict[str, Any]) -> Row:
    experiment = _text(item, "experiment", 64)
    if not EXPERIMENT_KEY.match(experiment):
        raise Malformed(f"'experiment' is not a valid experiment key: {experiment[:64]!r}")
    attributes = item.get("attributes")
    problem = attributes_problem(attributes)
    if problem is not None:
        raise Malformed(problem)
    return {
        **_common(item),
        "experiment": experiment,
        "variant": _text(item, "variant", 64),
        "attributes": attributes or None,
    }


def parse_event(item: dict[str, Any]) -> Row:
    return {
        **_common(item),
        "name": _text(item, "name", 128),
        "value": _value(item),
        "properties": _properties(item),
    }


def parse_message(topic: str, value: bytes | None) -> Row:
    """The lake row for one message value of `topic` (without the Kafka audit columns)."""
    if value is None:
        raise Malformed("empty message value")
    try:
        item = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"value is not JSON: {exc}") from None
    if not isinstance(item, dict):
        raise Malformed("value must be a JSON object")
    if topic == EXPOSURES_TOPIC:
        return parse_exposure(item)
    if topic == EVENTS_TOPIC:
        return parse_event(item)
    raise Malformed(f"unexpected topic {topic!r}")
