"""Request and response bodies of the assignment service. The stored experiment document
(`ExperimentPublic` and its parts) is shared with the readers in `services.common.registry`;
the write-side requests live here because only this service writes."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from assay.models import Conditions, ExperimentKey, LayerName, Salt, Status, Traffic, Variant, check_variants
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.common.registry.models import (
    AnalysisPlan,
    AuditEntry,
    Dimensions,
    ExperimentDefinition,
    ExperimentPlan,
    ExperimentPublic,
    MetricsPlan,
    check_dimensions,
)

__all__ = [
    "AnalysisPlan",
    "AuditEntry",
    "ExperimentCreate",
    "ExperimentPublic",
    "ExperimentUpdate",
    "MetricsPlan",
    "StatusChange",
]

UnitId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_LIST = 100
MAX_ATTRIBUTE_STRING = 1024


DIMENSIONS_DESCRIPTION = (
    "Up to 5 distinct unit attributes to slice the results by. The SDK attaches the unit's values of "
    "them to the exposures it logs; a unit is counted in the slice of its first exposure, so when a "
    "dimension is added (allowed while running), units first exposed before that are in its slice '__missing__'."
)


class ExperimentCreate(ExperimentDefinition):
    """Body of `POST /v1/experiments`: the definition; the registry adds status and version."""

    dimensions: Dimensions = Field(default_factory=list, description=DIMENSIONS_DESCRIPTION)


class ExperimentUpdate(BaseModel):
    """Partial update; `version` (if given) must match the stored one."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    hypothesis: Annotated[str, StringConstraints(max_length=5000)] | None = None
    owner: Annotated[str, StringConstraints(max_length=100)] | None = None
    variants: list[Variant] | None = None
    traffic: Traffic | None = None
    salt: Salt | None = None
    layer: LayerName | None = None
    layer_share: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    targeting: Conditions | None = None
    metrics: MetricsPlan | None = None
    analysis: AnalysisPlan | None = None
    plan: ExperimentPlan | None = None
    # Allowed while running: a unit's slice is valued at its first exposure, so units first
    # exposed before the change fall in `__missing__` of a dimension added later.
    dimensions: Dimensions | None = Field(None, description=DIMENSIONS_DESCRIPTION)
    # Needed to change the primary metrics or alpha of a running or paused experiment.
    reason: Annotated[str, StringConstraints(max_length=1000)] = ""

    @field_validator("variants")
    @classmethod
    def _variants_usable(cls, variants: list[Variant] | None) -> list[Variant] | None:
        if variants is not None:
            check_variants(variants)
        return variants

    @field_validator("dimensions")
    @classmethod
    def _dimensions_distinct(cls, dimensions: list[str] | None) -> list[str] | None:
        return None if dimensions is None else check_dimensions(dimensions)


NULLABLE_ON_UPDATE = frozenset({"salt", "layer", "layer_share"})


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status
    reason: Annotated[str, StringConstraints(max_length=1000)] = ""


class OverrideSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variant: Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _check_attribute_value(name: str, value: Any) -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"attribute '{name}' must be a finite number")
        return
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_STRING:
            raise ValueError(f"attribute '{name}' is longer than {MAX_ATTRIBUTE_STRING} characters")
        return
    if isinstance(value, list):
        if len(value) > MAX_ATTRIBUTE_LIST:
            raise ValueError(f"attribute '{name}' has more than {MAX_ATTRIBUTE_LIST} items")
        for item in value:
            if isinstance(item, list | dict):
                raise ValueError(f"attribute '{name}' may only hold a flat list of values")
            _check_attribute_value(name, item)
        return
    raise ValueError(f"attribute '{name}' must be a string, number, boolean, null or list")


def check_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    if len(attributes) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes per unit")
    for name, value in attributes.items():
        if not name or len(name) > 64:
            raise ValueError("attribute names must be 1 to 64 characters long")
        _check_attribute_value(name, value)
    return attributes


def check_unit_id(unit_id: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in unit_id):
        raise ValueError("unit_id must not contain control characters")
    return unit_id


ExperimentList = Annotated[list[ExperimentKey], Field(max_length=100)]


class UnitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_id: UnitId
    attributes: dict[str, Any] = Field(default_factory=dict)

    _unit = field_validator("unit_id")(check_unit_id)
    _attributes = field_validator("attributes")(check_attributes)


class AssignRequest(UnitRequest):
    experiments: ExperimentList | None = None


class BatchAssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    units: Annotated[list[UnitRequest], Field(min_length=1)]
    experiments: ExperimentList | None = None


class AssignmentPublic(BaseModel):
    variant: str | None
    reason: Literal[
        "hash", "sticky", "override", "not_running", "not_targeted", "not_in_traffic",
        "layer_excluded", "unknown_experiment",
    ]  # fmt: skip
    dimensions: list[str] = Field(
        default_factory=list, description="present only when the unit is exposed (reason hash or sticky) and "
        "the experiment has dimensions: the attributes whose values the SDK attaches to the exposure it logs",
    )  # fmt: skip


class AssignResponse(BaseModel):
    unit_id: str
    degraded: bool
    assignments: dict[str, AssignmentPublic]


class BatchAssignResponse(BaseModel):
    results: list[AssignResponse]
