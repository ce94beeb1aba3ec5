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
from pydantic import BaseModel, ValidationError

from services.exposure.schemas import EventIn, ExposureIn
from services.exposure.spool_format import SpoolEntry
from services.exposure.timestamps import TimeWindow, format_rfc3339

Kind = Literal["exposure", "event"]
KINDS: tuple[Kind, ...] = ("exposure", "event")
# Bounded label values for the rejection counter.
ReasonClass = Literal["malformed", "timestamp", "unknown_experiment", "unknown_variant", "experiment_status"]
REASON_CLASSES: tuple[ReasonClass, ...] = (
    "malformed", "timestamp", "unknown_experiment", "unknown_variant", "experiment_status",
)  # fmt: skip
TOPICS: dict[Kind, str] = {"exposure": "assay.exposures", "event": "assay.events"}
ENVELOPE_FIELDS: dict[Kind, str] = {"exposure": "exposures", "event": "events"}
ACCEPTED_STATUSES = frozenset({"running", "paused", "stopped"})
MAX_NAME_ECHO = 40


@dataclass(frozen=True, slots=True)
class Rejected:
    index: int
    error: str
    reason: ReasonClass


@dataclass(frozen=True, slots=True)
class ItemContext:
    window: TimeWindow
    received_at: str
    experiments: Mapping[str, ExperimentConfig]


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
    if first["type"] == "missing":
        text = f"'{location}' is required"
    elif first["type"] == "extra_forbidden":
        text = f"unknown field '{location}'"
    elif message.startswith(location):
        text = message
    else:
        text = f"{location}: {message}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    reason: ReasonClass = "timestamp" if first["loc"][:1] == ("timestamp",) else "malformed"
    return text[:300], reason


def _registry_problem(
    item: ExposureIn, experiments: Mapping[str, ExperimentConfig]
) -> tuple[str, ReasonClass] | None:
    config = experiments.get(item.experiment)
    if config is None:
        return f"unknown experiment '{item.experiment}'", "unknown_experiment"
    if config.status not in ACCEPTED_STATUSES:
        return (
            f"experiment '{item.experiment}' is {config.status}; exposures are accepted only while it is "
            "running, paused or stopped"
        ), "experiment_status"
    if all(variant.key != item.variant for variant in config.variants):
        return f"unknown variant '{item.variant}' for experiment '{item.experiment}'", "unknown_variant"
    return None


def _exposure_value(item: ExposureIn, event_id: str, context: ItemContext) -> bytes:
    return orjson.dumps({
        "event_id": event_id, "experiment": item.experiment, "variant": item.variant,
        "unit_id": item.unit_id, "timestamp": format_rfc3339(item.timestamp),
        "received_at": context.received_at,
    })  # fmt: skip


def _event_value(item: EventIn, event_id: str, context: ItemContext) -> bytes:
    return orjson.dumps({
        "event_id": event_id, "name": item.name, "unit_id": item.unit_id,
        "timestamp": format_rfc3339(item.timestamp), "value": item.value,
        "properties": item.properties, "received_at": context.received_at,
    })  # fmt: skip


def _validate_one(kind: Kind, raw: Any, context: ItemContext) -> SpoolEntry | tuple[str, ReasonClass]:
    if not isinstance(raw, dict):
        return f"each item must be a JSON object, not {type(raw).__name__}", "malformed"
    model: type[BaseModel] = ExposureIn if kind == "exposure" else EventIn
    try:
        item = model.model_validate(raw, context=context.window)
    except ValidationError as exc:
        return describe(exc)
    if isinstance(item, ExposureIn):
        problem = _registry_problem(item, context.experiments)
        if problem is not None:
            return problem
    assert isinstance(item, ExposureIn | EventIn)
    event_id = item.event_id or str(uuid.uuid4())
    value = _exposure_value(item, event_id, context) if isinstance(item, ExposureIn) else (
        _event_value(item, event_id, context)
    )  # fmt: skip
    return SpoolEntry(TOPICS[kind], item.unit_id.encode("utf-8"), value)


def validate_items(kind: Kind, items: list[Any], context: ItemContext) -> Outcome:
    outcome = Outcome()
    for index, raw in enumerate(items):
        result = _validate_one(kind, raw, context)
        if isinstance(result, SpoolEntry):
            outcome.entries.append(result)
        else:
            outcome.rejected.append(Rejected(index, *result))
    return outcome


def needs_fresh_registry(outcome: Outcome) -> bool:
    """An unknown experiment or variant may only mean the cached registry is behind."""
    return any(r.reason in ("unknown_experiment", "unknown_variant") for r in outcome.rejected)
