"""Request and response bodies of the exposure service.

Envelopes (`ExposureBatch`, `EventBatch`) are checked as a whole; every item inside is
validated on its own (`ExposureIn`, `EventIn`) so one bad item never rejects the others.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, cast

import orjson
from assay.models import ExperimentKey, VariantKey
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)

from services.common.envelope import ATTRIBUTE_NAME, MAX_ATTRIBUTE_VALUE_LENGTH, MAX_ATTRIBUTES, attributes_problem
from services.exposure.timestamps import TimeWindow, parse_timestamp

MAX_PROPERTIES = 64
MAX_PROPERTY_KEY = 128
MAX_PROPERTY_DEPTH = 3
MAX_PROPERTY_NODES = 512
MAX_PROPERTIES_BYTES = 8192
# C0 controls and DEL (as the assignment service's unit ids), and lone UTF-16 surrogates,
# which cannot be encoded as UTF-8.
FORBIDDEN_CHARS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def no_control_chars(value: str) -> str:
    if FORBIDDEN_CHARS.search(value):
        raise ValueError("must not contain control characters or lone surrogates")
    return value


EventId = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(no_control_chars)]
UnitId = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(no_control_chars)]
EVENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"
# The metrics lake stores values as fixed-point numbers below this magnitude; refusing larger
# ones here tells the sender, instead of quarantining them downstream.
MAX_ABS_VALUE = 1e12

EventName = Annotated[str, StringConstraints(pattern=EVENT_NAME_PATTERN)]
EventValue = Annotated[float, Field(allow_inf_nan=False, gt=-MAX_ABS_VALUE, lt=MAX_ABS_VALUE)]


def _check_property_key(key: object) -> None:
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_PROPERTY_KEY:
        raise ValueError(f"property names must be 1 to {MAX_PROPERTY_KEY} characters long")
    if FORBIDDEN_CHARS.search(key):
        raise ValueError("property names must not contain control characters")


def _check_property_tree(properties: dict[str, Any]) -> None:
    """Walk the map without recursion: bounded depth and node count, JSON types only."""
    stack: list[tuple[object, int]] = [(properties, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_PROPERTY_NODES:
            raise ValueError(f"properties hold more than {MAX_PROPERTY_NODES} values")
        if isinstance(node, dict | list):
            if depth >= MAX_PROPERTY_DEPTH:
                raise ValueError(f"properties may nest at most {MAX_PROPERTY_DEPTH} levels deep")
            children = node.values() if isinstance(node, dict) else node
            if isinstance(node, dict):
                for key in node:
                    _check_property_key(key)
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError("property values must be finite numbers (no NaN or Infinity)")
        elif node is not None and not isinstance(node, str | int | float | bool):
            raise ValueError(f"property values must be JSON values, not {type(node).__name__}")


def check_properties(properties: dict[str, Any]) -> dict[str, Any]:
    if len(properties) > MAX_PROPERTIES:
        raise ValueError(f"{len(properties)} properties; at most {MAX_PROPERTIES} are allowed")
    _check_property_tree(properties)
    try:
        size = len(orjson.dumps(properties))
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"properties cannot be stored: {exc}") from None
    if size > MAX_PROPERTIES_BYTES:
        raise ValueError(f"properties take {size} bytes as JSON; at most {MAX_PROPERTIES_BYTES} are allowed")
    return properties


class ItemIn(BaseModel):
    """Fields every item has. `timestamp` comes in as RFC 3339 or epoch milliseconds and is
    held as an aware UTC datetime; the validation context is the accepted `TimeWindow`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event_id: EventId | None = None
    unit_id: UnitId
    timestamp: datetime

    @field_validator("timestamp", mode="plain", json_schema_input_type=int | str)
    @classmethod
    def _timestamp_in_window(cls, value: object, info: ValidationInfo) -> datetime:
        moment = parse_timestamp(value)
        if isinstance(info.context, TimeWindow):
            info.context.check(moment)
        return moment


# What `attributes_problem` (the one rule, shared with the metrics ingest) accepts, for the docs.
ATTRIBUTES_SCHEMA: dict[str, Any] = {
    "type": "object", "maxProperties": MAX_ATTRIBUTES, "propertyNames": {"pattern": ATTRIBUTE_NAME.pattern},
    "additionalProperties": {"type": "string", "maxLength": MAX_ATTRIBUTE_VALUE_LENGTH},
    "examples": [{"country": "US", "platform": "ios"}],
}  # fmt: skip
ATTRIBUTES_DESCRIPTION = (
    "The unit's values of the experiment's `dimensions` (the SDK attaches them): string values, "
    f"at most {MAX_ATTRIBUTES} keys, values up to {MAX_ATTRIBUTE_VALUE_LENGTH} characters. An item whose "
    "attributes break these rules is rejected on its own, with the reason."
)


AttributesInput = Annotated[dict[str, str], WithJsonSchema(ATTRIBUTES_SCHEMA)] | None


class ExposureIn(ItemIn):
    experiment: ExperimentKey
    variant: VariantKey
    attributes: dict[str, str] | None = Field(None, description=ATTRIBUTES_DESCRIPTION)

    @field_validator("attributes", mode="plain", json_schema_input_type=AttributesInput)
    @classmethod
    def _attributes_carried(cls, value: object) -> dict[str, str] | None:
        problem = attributes_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return cast("dict[str, str] | None", value)  # attributes_problem accepts only null or a map of strings


class EventIn(ItemIn):
    name: EventName
    value: EventValue | None = None
    properties: Annotated[dict[str, Any], AfterValidator(check_properties)] = Field(default_factory=dict)


class ExposureBatch(BaseModel):
    """`POST /v1/exposures`; the items are validated one by one (see `ExposureIn`)."""

    model_config = ConfigDict(extra="forbid")

    exposures: list[Any]


class EventBatch(BaseModel):
    """`POST /v1/events`; the items are validated one by one (see `EventIn`)."""

    model_config = ConfigDict(extra="forbid")

    events: list[Any]


class Rejection(BaseModel):
    index: int
    error: str


class IngestResult(BaseModel):
    accepted: int
    rejected: list[Rejection]


def batch_schema(envelope_field: str, item: type[BaseModel], max_items: int) -> dict[str, Any]:
    """OpenAPI request-body schema of an envelope, for the docs (bodies are parsed by hand)."""
    return {
        "type": "object", "required": [envelope_field], "additionalProperties": False,
        "properties": {envelope_field: {"type": "array", "maxItems": max_items,
                                        "items": item.model_json_schema(mode="validation")}},
    }  # fmt: skip
