"""The experiment document as stored in the registry and read by every service.

The assignment service validates writes with these models and stores `ExperimentPublic` as
JSON; readers parse the same JSON with the same model, so a field means one thing everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from assay.models import (
    ATTRIBUTE_PATTERN,
    Conditions,
    ExperimentKey,
    LayerName,
    Salt,
    Status,
    Traffic,
    Variant,
    check_variants,
)
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

MetricName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
MetricList = Annotated[list[MetricName], Field(max_length=50)]
MAX_DIMENSIONS = 5
# Unit attributes the results are sliced by (valued at a unit's first exposure; the SDK
# attaches them to the exposures it logs).
Dimensions = Annotated[
    list[Annotated[str, StringConstraints(pattern=ATTRIBUTE_PATTERN)]], Field(max_length=MAX_DIMENSIONS)
]


def check_dimensions(dimensions: list[str]) -> list[str]:
    """The rule beyond the type: each dimension once (create and update share it)."""
    if len(set(dimensions)) != len(dimensions):
        raise ValueError("dimensions must be distinct")
    return dimensions


class MetricsPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    primary: MetricList = Field(default_factory=list)
    secondary: MetricList = Field(default_factory=list)
    guardrails: MetricList = Field(default_factory=list)


class AnalysisPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=0.5)
    cuped: bool = True
    sequential: bool = False
    sequential_tuning: float = Field(5000.0, gt=0, le=1e9)
    srm_threshold: float = Field(0.001, gt=0, lt=0.5)
    correction: Literal["holm", "bh", "none"] = "holm"
    # Relative harm a guardrail may show and still pass (0.02 = 2% worse is tolerated).
    guardrail_margin: float = Field(0.0, ge=0, lt=1)
    # Relative effect the primary metrics should be able to detect; drives `keep_running`.
    minimum_detectable_effect: float = Field(0.05, gt=0, le=10)
    power: float = Field(0.8, gt=0.5, lt=1)


class ExperimentPlan(BaseModel):
    """What the owner commits to before starting (pre-registration); `/v1/power` helps fill it."""

    model_config = ConfigDict(extra="forbid")

    minimum_detectable_effect: float | None = Field(
        None, gt=0, le=10, description="relative effect to detect; unset: analysis.minimum_detectable_effect"
    )
    planned_units_per_variant: int | None = Field(None, ge=1, le=10**12)
    planned_end: AwareDatetime | None = None


class FrozenPlan(BaseModel):
    """The analysis plan as it stood when the experiment started, with a hash of it."""

    frozen_at: str
    hash: str
    primary: list[str]
    alpha: float
    sequential: bool
    minimum_detectable_effect: float
    planned_units_per_variant: int | None = None
    planned_end: str | None = None


class PlanChange(BaseModel):
    """A change to the primary metrics or alpha after the start, with the reason given."""

    at: str
    fields: list[str]
    reason: str


class ExperimentFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    hypothesis: Annotated[str, StringConstraints(max_length=5000)] = ""
    owner: Annotated[str, StringConstraints(max_length=100)] = ""
    variants: list[Variant]
    traffic: Traffic = 1.0
    salt: Salt | None = None
    layer: LayerName | None = None
    layer_share: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    targeting: Conditions = Field(default_factory=list)
    metrics: MetricsPlan = Field(default_factory=MetricsPlan)
    analysis: AnalysisPlan = Field(default_factory=AnalysisPlan)
    plan: ExperimentPlan = Field(default_factory=ExperimentPlan)
    dimensions: Dimensions = Field(default_factory=list)

    @field_validator("variants")
    @classmethod
    def _variants_usable(cls, variants: list[Variant]) -> list[Variant]:
        check_variants(variants)
        return variants

    @field_validator("dimensions")
    @classmethod
    def _dimensions_distinct(cls, dimensions: list[str]) -> list[str]:
        return check_dimensions(dimensions)


class ExperimentDefinition(ExperimentFields):
    """What an owner defines: the fields plus the key (the body of a create request)."""

    key: ExperimentKey


class ExperimentPublic(ExperimentDefinition):
    """The stored document: the definition plus what the registry maintains."""

    salt: Salt
    status: Status
    version: int
    created_at: str
    updated_at: str
    layer_range: tuple[int, int] | None = None
    frozen_plan: FrozenPlan | None = Field(None, description="set on draft -> running")
    plan_changes: list[PlanChange] = Field(
        default_factory=list, description="changes of the primary metrics or alpha after the start"
    )


class AuditEntry(BaseModel):
    at: str
    actor: str
    action: str
    changes: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    version: int


def parse_docs(raw: Mapping[Any, Any]) -> dict[str, ExperimentPublic]:
    """The registry hash (key -> JSON document) as typed documents; raises on a bad one."""
    return {key: ExperimentPublic.model_validate_json(value) for key, value in raw.items()}
