"""Configuration models shared by the SDK and the assignment service.

Bad configurations are rejected loudly when they are written; evaluation never "fixes"
weights or conditions at read time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from assay.compiled import CompiledExperiment, compile_experiment
from assay.semver import parse_semver

EXPERIMENT_KEY_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
VARIANT_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
ATTRIBUTE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
MAX_VARIANTS = 20
MAX_CONDITIONS = 50
MAX_IN_VALUES = 1000
MAX_STRING_VALUE = 1024
WEIGHT_TOLERANCE = 1e-6

ExperimentKey = Annotated[str, StringConstraints(pattern=EXPERIMENT_KEY_PATTERN)]
VariantKey = Annotated[str, StringConstraints(pattern=VARIANT_KEY_PATTERN)]
LayerName = Annotated[str, StringConstraints(pattern=EXPERIMENT_KEY_PATTERN)]
Salt = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Status = Literal["draft", "running", "paused", "stopped", "archived"]
Scalar = str | bool | int | float

SCALAR_OPS = ("eq", "neq", "contains")
LIST_OPS = ("in", "not_in")
ORDER_OPS = ("gt", "gte", "lt", "lte")
SEMVER_OPS = ("semver_eq", "semver_neq", "semver_gt", "semver_gte", "semver_lt", "semver_lte")
TargetingOp = Literal[
    "eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "exists",
    "semver_eq", "semver_neq", "semver_gt", "semver_gte", "semver_lt", "semver_lte",
]  # fmt: skip


def _check_scalar(value: Any, op: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"op '{op}' needs a finite number, not {value!r}")
        return
    if isinstance(value, str):
        if len(value) > MAX_STRING_VALUE:
            raise ValueError(f"op '{op}' value is longer than {MAX_STRING_VALUE} characters")
        return
    raise ValueError(f"op '{op}' needs a string, number or boolean value, got {type(value).__name__}")


class Condition(BaseModel):
    """One targeting rule; every rule of an experiment must hold for a unit to be eligible."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attribute: Annotated[str, StringConstraints(pattern=ATTRIBUTE_PATTERN)]
    op: TargetingOp
    value: Any = None

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: Any) -> Any:
        op = info.data.get("op")
        if op is None:
            return value
        if op == "exists":
            if not isinstance(value, bool):
                raise ValueError("op 'exists' needs value true or false")
        elif op in LIST_OPS:
            if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
                raise ValueError(f"op '{op}' needs a list of 1 to {MAX_IN_VALUES} values")
            for item in value:
                _check_scalar(item, op)
        elif op in SEMVER_OPS:
            if not isinstance(value, str) or parse_semver(value) is None:
                raise ValueError(f"op '{op}' needs a semantic version such as '2.4.0', got {value!r}")
        elif op in ORDER_OPS:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(f"op '{op}' needs a number or a string value")
            _check_scalar(value, op)
        else:
            _check_scalar(value, op)
        return value


class Variant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: VariantKey
    weight: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def check_variants(variants: Sequence[Variant]) -> None:
    """Raise ValueError with an actionable sentence when the variant list is unusable."""
    if len(variants) < 2:
        raise ValueError(f"an experiment needs at least two variants, got {len(variants)}")
    if len(variants) > MAX_VARIANTS:
        raise ValueError(f"an experiment may have at most {MAX_VARIANTS} variants")
    keys = [v.key for v in variants]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"variant keys must be unique; repeated: {', '.join(duplicates)}")
    total = math.fsum(v.weight for v in variants)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ValueError(f"variant weights sum to {total:.6g}; they must sum to 1")


Traffic = Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]
Conditions = Annotated[list[Condition], Field(max_length=MAX_CONDITIONS)]


class ExperimentConfig(BaseModel):
    """What evaluation needs to know about one experiment (served by GET /v1/config)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: ExperimentKey
    status: Status = "running"
    variants: list[Variant]
    traffic: Traffic = 1.0
    salt: Salt
    layer: LayerName | None = None
    layer_range: tuple[int, int] | None = None
    targeting: Conditions = Field(default_factory=list)
    overrides: dict[str, str] = Field(default_factory=dict)
    version: int = 0
    # Unit attributes the results are sliced by: the SDK attaches the unit's values of these to
    # the exposures it logs (`assay.dimensions`). The registry checked them when they were written.
    dimensions: list[str] = Field(default_factory=list)

    @field_validator("variants")
    @classmethod
    def _variants_usable(cls, variants: list[Variant]) -> list[Variant]:
        check_variants(variants)
        return variants

    def variant_keys(self) -> list[str]:
        return [v.key for v in self.variants]

    @cached_property
    def compiled(self) -> CompiledExperiment:
        """Closures, bucket bounds and the generated `decide` for fast evaluation, built once per config."""
        return compile_experiment(self)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy whose `compiled` is built afresh: pydantic copies the instance's cached
        values too, so a copy with other fields would otherwise decide as the original."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("compiled", None)
        return copy


def is_valid_experiment_key(key: str) -> bool:
    return re.fullmatch(EXPERIMENT_KEY_PATTERN, key) is not None
