"""Typed, stable error codes of the statistics engine.

Expected failures (a variant without units, zero variance, a hostile request) come back as
data carrying one of these codes; exceptions are reserved for programmer errors. The codes
are part of the HTTP contract: clients may branch on them, so never rename one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
    # Request-level input errors: the API layer answers these with a 4xx.
    INVALID_NUMBER = "invalid_number"
    NEGATIVE_COUNT = "negative_count"
    NON_INTEGER_COUNT = "non_integer_count"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    INCONSISTENT_SUM_SQUARES = "inconsistent_sum_squares"
    INCONSISTENT_COVARIATE = "inconsistent_covariate"
    INCONSISTENT_DENOMINATOR = "inconsistent_denominator"
    INCONSISTENT_PROPORTION = "inconsistent_proportion"
    INCONSISTENT_QUANTILE = "inconsistent_quantile"
    MISSING_DENOMINATOR = "missing_denominator"
    UNKNOWN_METRIC_TYPE = "unknown_metric_type"
    TOO_FEW_VARIANTS = "too_few_variants"
    TOO_MANY_VARIANTS = "too_many_variants"
    DUPLICATE_VARIANT_KEY = "duplicate_variant_key"
    INVALID_VARIANT_KEY = "invalid_variant_key"
    INVALID_PARAMETER = "invalid_parameter"
    UNKNOWN_CORRECTION = "unknown_correction"
    # Per-comparison analysis failures: returned inside a 200 answer.
    EMPTY_VARIANT = "empty_variant"
    TOO_FEW_UNITS = "too_few_units"
    ZERO_VARIANCE = "zero_variance"
    BASELINE_MEAN_ZERO = "baseline_mean_zero"
    DENOMINATOR_ZERO = "denominator_zero"
    DENSITY_ZERO = "density_zero"
    # Power calculator.
    MDE_UNREACHABLE = "mde_unreachable"


@dataclass(frozen=True)
class AnalysisError:
    """A result that cannot be computed from otherwise valid input."""

    code: ErrorCode
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


@dataclass(frozen=True)
class InputError:
    """Hostile or malformed input; `field` is a JSON-path-like pointer such as `variants[1].n`."""

    code: ErrorCode
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "field": self.field, "message": self.message}


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity: such values leave the engine as null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)
