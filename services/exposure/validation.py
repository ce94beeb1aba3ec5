"""Turn raw request items into messages ready to produce, or into per-item rejections.

Exposures must name an experiment the registry knows, in a status that still takes data,
and one of its variants. `running`, `paused` and `stopped` are accepted because SDK batches
arrive late (an exposure logged just before a pause or a stop is still real data); `draft`
experiments never assigned anyone and `archived` ones are closed, so both are rejected.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from assay.models import ExperimentConfig
from pydantic import ValidationError

from services.common.envelope import event_message, exposure_message, message_key
from services.common.topics import TOPIC_OF_KIND, Kind
from services.exposure.items import (
    ValidEvent,
    ValidExposure,
    event_from_model,
    exposure_from_model,
    quick_event,
    quick_exposure,
)
from services.exposure.schemas import EventIn, ExposureIn
from services.exposure.spool_format import SpoolEntry
from services.exposure.timestamps import TimeWindow

# Bounded label values for the rejection counter.
ReasonClass = Literal[
    "malformed", "timestamp", "attributes", "unknown_experiment", "unknown_variant", "experiment_status"
]
REASON_CLASSES: tuple[ReasonClass, ...] = (
    "malformed", "timestamp", "attributes", "unknown_experiment", "unknown_variant", "experiment_status",
)  # fmt: skip
# Fields whose problems have their own reason class; their messages name the field themselves.
FIELD_REASONS: dict[str, ReasonClass] = {"timestamp": "timestamp", "attributes": "attributes"}
ENVELOPE_FIELDS: dict[Kind, str] = {"exposure": "exposures", "event": "events"}
ACCEPTED_STATUSES = frozenset({"running", "paused", "stopped"})
MAX_NAME_ECHO = 40


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int
    error: str
    reason: ReasonClass


class RegistryIndex:
    """What exposure checks need from a registry snapshot, in sets for quick lookups."""

    def __init__(self, experiments: Mapping[str, ExperimentConfig]) -> None:
        self.status = {key: config.status for key, config in experiments.items()}
        self.variants = {key: frozenset(config.variant_keys()) for key, config in experiments.items()}

    def problem(self, experiment: str, variant: str) -> tuple[str, ReasonClass] | None:
        status = self.status.get(experiment)
        if status is None:
            return f"unknown experiment '{experiment}'", "unknown_experiment"
        if status not in ACCEPTED_STATUSES:
            return (
                f"experiment '{experiment}' is {status}; exposures are accepted only while it is "
                "running, paused or stopped"
            ), "experiment_status"
        if variant not in self.variants[experiment]:
            return f"unknown variant '{variant}' for experiment '{experiment}'", "unknown_variant"
        return None


@dataclass(frozen=True, slots=True)
class ItemContext:
    window: TimeWindow
    received_at: str
    registry: RegistryIndex


@dataclass(slots=True)
class Outcome:
    entries: list[SpoolEntry] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_NAME_ECHO else text[:MAX_NAME_ECHO] + "..."


def describe(exc: ValidationError) -> tuple[str, ReasonClass]:
    """One actionable sentence for the first problem of an item (inputs are not echoed)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    location = _shorten(".".join(str(part) for part in first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ")
    reason = FIELD_REASONS.get(str(first["loc"][0]), "malformed") if first["loc"] else "malformed"
    if first["type"] == "missing":
        text = f"'{location}' is required"
    elif reason == "attributes":
        text = message  # `attributes_problem` words it, naming the attribute
    elif first["type"] == "extra_forbidden":
        text = f"unknown field '{location}'"
    elif message.startswith(location):
        text = message
    else:
        text = f"{location}: {message}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text[:300], reason


def _exposure_value(item: ValidExposure, event_id: str, received_at: str) -> bytes:
    return exposure_message(
        event_id, item.experiment, item.variant, item.unit_id, item.timestamp, received_at, item.attributes
    )


def _event_value(item: ValidEvent, event_id: str, received_at: str) -> bytes:
    return event_message(event_id, item.name, item.unit_id, item.timestamp, item.value, item.properties, received_at)


def _checked(kind: Kind, raw: dict[str, Any], window: TimeWindow) -> ValidExposure | ValidEvent | ValidationError:
    if kind == "exposure":
        quick: ValidExposure | ValidEvent | None = quick_exposure(raw, window)
        if quick is None:
            try:
                return exposure_from_model(ExposureIn.model_validate(raw, context=window))
            except ValidationError as exc:
                return exc
        return quick
    quick = quick_event(raw, window)
    if quick is None:
        try:
            return event_from_model(EventIn.model_validate(raw, context=window))
        except ValidationError as exc:
            return exc
    return quick


def _validate_one(kind: Kind, raw: Any, context: ItemContext) -> SpoolEntry | tuple[str, ReasonClass]:
    if not isinstance(raw, dict):
        return f"each item must be a JSON object, not {type(raw).__name__}", "malformed"
    item = _checked(kind, raw, context.window)
    if isinstance(item, ValidationError):
        return describe(item)
    event_id = item.event_id or str(uuid.uuid4())
    if isinstance(item, ValidExposure):
        problem = context.registry.problem(item.experiment, item.variant)
        if problem is not None:
            return problem
        try:
            value = _exposure_value(item, event_id, context.received_at)
        except orjson.JSONEncodeError as exc:
            # Every other field is checked for lone surrogates already; JSON escapes (`\ud800`)
            # can still put one in an attribute, and no UTF-8 message can carry it.
            return f"'attributes' cannot be stored: {str(exc)[:120]}", "attributes"
    else:
        value = _event_value(item, event_id, context.received_at)
    return SpoolEntry(TOPIC_OF_KIND[kind], message_key(item.unit_id), value)


def validate_items(kind: Kind, items: list[Any], context: ItemContext) -> Outcome:
    outcome = Outcome()
    for index, raw in enumerate(items):
        result = _validate_one(kind, raw, context)
        if isinstance(result, SpoolEntry):
            outcome.entries.append(result)
        else:
            outcome.rejected.append(Rejected(index, *result))
    return outcome


REGISTRY_REASONS = frozenset({"unknown_experiment", "unknown_variant", "experiment_status"})


def needs_fresh_registry(outcome: Outcome) -> bool:
    """An unknown experiment or variant, or a draft one, may only mean that the cached registry
    is behind (an experiment created or started a moment ago)."""
    return any(r.reason in REGISTRY_REASONS for r in outcome.rejected)
