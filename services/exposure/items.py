"""Validated items, and a fast path that validates the common, well-formed item without
building a pydantic model.

The fast path accepts only what the models in `schemas` accept, with the same values; any
item it is unsure about goes through the model, which also words the error. Hypothesis
checks the agreement (tests/unit/exposure/test_items.py). It exists because model
validation was the largest cost of the service's own per-item work (bench/exposure.py).
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from assay.models import EXPERIMENT_KEY_PATTERN, VARIANT_KEY_PATTERN
from assay.timefmt import format_rfc3339

from services.common.envelope import attributes_problem
from services.exposure.schemas import (
    EVENT_NAME_PATTERN,
    FORBIDDEN_CHARS,
    MAX_ABS_VALUE,
    EventIn,
    ExposureIn,
    check_properties,
)
from services.exposure.timestamps import TimestampError, TimeWindow, parse_timestamp

CANONICAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
EXPOSURE_FIELDS = frozenset(ExposureIn.model_fields)
EVENT_FIELDS = frozenset(EventIn.model_fields)


def _full(pattern: str) -> re.Pattern[str]:
    """The pattern for `fullmatch` (a `$` in `re` would also match before a final newline)."""
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


EXPERIMENT_KEY = _full(EXPERIMENT_KEY_PATTERN)
VARIANT_KEY = _full(VARIANT_KEY_PATTERN)
EVENT_NAME = _full(EVENT_NAME_PATTERN)


class ValidExposure(NamedTuple):
    event_id: str | None
    experiment: str
    variant: str
    unit_id: str
    timestamp: str  # RFC 3339 UTC, milliseconds
    attributes: dict[str, str] | None = None


class ValidEvent(NamedTuple):
    event_id: str | None
    name: str
    unit_id: str
    timestamp: str
    value: float | None
    properties: dict[str, Any]


def _plain_id(value: object, limit: int) -> bool:
    return type(value) is str and 0 < len(value) <= limit and FORBIDDEN_CHARS.search(value) is None


def _stamp(raw: object, window: TimeWindow) -> str | None:
    try:
        moment = parse_timestamp(raw)
        window.check(moment)
    except TimestampError:
        return None
    return raw if type(raw) is str and CANONICAL_TIME.fullmatch(raw) else format_rfc3339(moment)


def _common_ok(raw: dict[str, Any], fields: frozenset[str]) -> bool:
    event_id = raw.get("event_id")
    return (
        raw.keys() <= fields and (event_id is None or _plain_id(event_id, 128)) and _plain_id(raw.get("unit_id"), 256)
    )


def quick_exposure(raw: dict[str, Any], window: TimeWindow) -> ValidExposure | None:
    experiment, variant, attributes = raw.get("experiment"), raw.get("variant"), raw.get("attributes")
    if not (
        _common_ok(raw, EXPOSURE_FIELDS)
        and type(experiment) is str and EXPERIMENT_KEY.fullmatch(experiment)
        and type(variant) is str and VARIANT_KEY.fullmatch(variant)
        and (attributes is None or attributes_problem(attributes) is None)
    ):  # fmt: skip
        return None
    stamp = _stamp(raw.get("timestamp"), window)
    if stamp is None:
        return None
    return ValidExposure(raw.get("event_id"), experiment, variant, raw["unit_id"], stamp, attributes)


def _quick_value(value: object) -> tuple[bool, float | None]:
    if value is None:
        return True, None
    if type(value) not in (int, float):
        return False, None
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        return False, None
    return math.isfinite(number) and abs(number) < MAX_ABS_VALUE, number


def quick_event(raw: dict[str, Any], window: TimeWindow) -> ValidEvent | None:
    name, properties = raw.get("name"), raw.get("properties", {})
    if not (_common_ok(raw, EVENT_FIELDS) and type(name) is str and EVENT_NAME.fullmatch(name)):
        return None
    ok, value = _quick_value(raw.get("value"))
    if not ok or type(properties) is not dict:
        return None
    try:
        check_properties(properties)
    except ValueError:
        return None
    stamp = _stamp(raw.get("timestamp"), window)
    if stamp is None:
        return None
    return ValidEvent(raw.get("event_id"), name, raw["unit_id"], stamp, value, properties)


def exposure_from_model(item: ExposureIn) -> ValidExposure:
    return ValidExposure(
        item.event_id, item.experiment, item.variant, item.unit_id, format_rfc3339(item.timestamp), item.attributes
    )


def event_from_model(item: EventIn) -> ValidEvent:
    return ValidEvent(
        item.event_id, item.name, item.unit_id, format_rfc3339(item.timestamp), item.value, item.properties
    )
