"""Validation of sufficient statistics and analysis parameters against hostile input.

Every check returns typed `InputError`s (never raises) so the API layer can answer 4xx with
a sentence the caller can act on. Checks run on whatever the dataclasses hold at runtime,
so wrong types (a string n, a bool sum) are reported too, not only bad values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

from services.scorecard.stats.errors import ErrorCode, InputError
from services.scorecard.stats.multiple import Correction
from services.scorecard.stats.sufficient import VariantStats

# Beyond this magnitude squares overflow a double; no real metric sum gets near it.
MAX_ABS_VALUE = 1e150
# Relative slack for sums accumulated in floating point by the metrics job.
RELATIVE_TOLERANCE = 1e-7
DEFAULT_MAX_VARIANTS = 50


class MetricType(StrEnum):
    MEAN = "mean"
    PROPORTION = "proportion"
    RATIO = "ratio"


def _number_error(value: object, field: str) -> InputError | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return InputError(ErrorCode.INVALID_NUMBER, field, f"{field} must be a number")
    if not math.isfinite(value):
        return InputError(ErrorCode.INVALID_NUMBER, field, f"{field} must be finite, got {value}")
    if abs(value) > MAX_ABS_VALUE:
        return InputError(ErrorCode.VALUE_OUT_OF_RANGE, field, f"{field} exceeds {MAX_ABS_VALUE:g} in magnitude")
    return None


def _count_error(value: object, field: str) -> InputError | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return InputError(ErrorCode.NON_INTEGER_COUNT, field, f"{field} must be an integer")
    if value < 0:
        return InputError(ErrorCode.NEGATIVE_COUNT, field, f"{field} must be >= 0, got {value}")
    if value > MAX_ABS_VALUE:
        return InputError(ErrorCode.VALUE_OUT_OF_RANGE, field, f"{field} is implausibly large")
    return None


def _slack(*magnitudes: float) -> float:
    return RELATIVE_TOLERANCE * max(1.0, *(abs(m) for m in magnitudes))


def _centred_square(n: int, total: float, sum_squares: float) -> float:
    """sum (v - mean)^2 from sums; negative beyond rounding means the sums are impossible."""
    return sum_squares - total * total / n


def _block_errors(n: int, total: float, sum_squares: float, code: ErrorCode, field: str) -> list[InputError]:
    if n == 0:
        if total != 0 or sum_squares != 0:
            return [InputError(code, field, f"{field}: sums must be 0 when n is 0")]
        return []
    if _centred_square(n, total, sum_squares) < -_slack(sum_squares, total * total / n):
        return [
            InputError(
                code,
                f"{field}.sum_squares",
                f"{field}.sum_squares is {sum_squares:g} but must be at least sum^2/n = {total * total / n:g}",
            )
        ]
    return []


def _cauchy_schwarz_errors(s_xx: float, s_yy: float, s_xy: float, code: ErrorCode, field: str) -> list[InputError]:
    """The centred cross-product can never exceed sqrt(S_xx S_yy) (Cauchy-Schwarz)."""
    if s_xy * s_xy > s_xx * s_yy * (1 + 1e-6) + _slack(s_xx * s_yy):
        return [
            InputError(
                code,
                f"{field}.sum_products",
                f"{field}.sum_products implies a correlation above 1 in absolute value",
            )
        ]
    return []


def _paired_block_errors(
    variant: VariantStats,
    block_sum: float,
    block_squares: float,
    block_products: float,
    code: ErrorCode,
    field: str,
) -> list[InputError]:
    sample = variant.sample
    numbers = [
        _number_error(block_sum, f"{field}.sum"),
        _number_error(block_squares, f"{field}.sum_squares"),
        _number_error(block_products, f"{field}.sum_products"),
    ]
    errors = [error for error in numbers if error is not None]
    if errors:
        return errors
    errors = _block_errors(sample.n, block_sum, block_squares, code, field)
    if errors or sample.n == 0:
        return errors
    s_xy = block_products - sample.sum * block_sum / sample.n
    return _cauchy_schwarz_errors(
        _centred_square(sample.n, block_sum, block_squares),
        _centred_square(sample.n, sample.sum, sample.sum_squares),
        s_xy,
        code,
        field,
    )


def _sample_errors(variant: VariantStats, metric_type: MetricType, field: str) -> list[InputError]:
    sample = variant.sample
    checks = [
        _count_error(sample.n, f"{field}.n"),
        _number_error(sample.sum, f"{field}.sum"),
        _number_error(sample.sum_squares, f"{field}.sum_squares"),
    ]
    errors = [error for error in checks if error is not None]
    if errors:
        return errors
    errors = _block_errors(sample.n, sample.sum, sample.sum_squares, ErrorCode.INCONSISTENT_SUM_SQUARES, field)
    if not errors and metric_type is MetricType.PROPORTION:
        errors = _proportion_errors(sample.n, sample.sum, sample.sum_squares, field)
    return errors


def _proportion_errors(n: int, total: float, sum_squares: float, field: str) -> list[InputError]:
    """A proportion's unit values are 0 or 1: 0 <= sum <= n and sum_squares == sum."""
    if not -_slack(n) <= total <= n + _slack(n) or abs(sum_squares - total) > _slack(total):
        return [
            InputError(
                ErrorCode.INCONSISTENT_PROPORTION,
                field,
                f"{field}: a proportion needs 0 <= sum <= n and sum_squares == sum (0/1 values)",
            )
        ]
    return []


def _optional_block_errors(variant: VariantStats, metric_type: MetricType, field: str) -> list[InputError]:
    errors: list[InputError] = []
    covariate, denominator = variant.covariate, variant.denominator
    if covariate is not None:
        errors += _paired_block_errors(
            variant,
            covariate.sum,
            covariate.sum_squares,
            covariate.sum_products,
            ErrorCode.INCONSISTENT_COVARIATE,
            f"{field}.covariate",
        )
        if covariate.denominator_products is not None:
            error = _number_error(covariate.denominator_products, f"{field}.covariate.denominator_products")
            errors += [] if error is None else [error]
    if metric_type is MetricType.RATIO:
        if denominator is None:
            return [
                *errors,
                InputError(
                    ErrorCode.MISSING_DENOMINATOR,
                    f"{field}.denominator",
                    f"{field}: a ratio metric needs a denominator block",
                ),
            ]
        errors += _paired_block_errors(
            variant,
            denominator.sum,
            denominator.sum_squares,
            denominator.sum_products,
            ErrorCode.INCONSISTENT_DENOMINATOR,
            f"{field}.denominator",
        )
    return errors


def validate_variant_stats(variant: VariantStats, metric_type: MetricType, field: str = "variant") -> list[InputError]:
    """Every reason these statistics could not have come from real units (empty if none)."""
    if not isinstance(variant.key, str) or not variant.key:
        return [InputError(ErrorCode.INVALID_VARIANT_KEY, f"{field}.key", f"{field}.key must be a non-empty string")]
    errors = _sample_errors(variant, metric_type, field)
    if errors:
        return errors
    return _optional_block_errors(variant, metric_type, field)


def _is_number_between(value: object, low: float, high: float) -> bool:
    """True for a finite real number strictly between low and high."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and low < value < high


def validate_parameters(alpha: object, sequential_tuning: object, correction: object) -> list[InputError]:
    errors: list[InputError] = []
    if not _is_number_between(alpha, 0.0, 1.0):
        errors.append(
            InputError(ErrorCode.INVALID_PARAMETER, "alpha", "alpha must be a number strictly between 0 and 1")
        )
    if not _is_number_between(sequential_tuning, 0.0, MAX_ABS_VALUE):
        errors.append(
            InputError(
                ErrorCode.INVALID_PARAMETER,
                "sequential_tuning",
                "sequential_tuning must be a positive number (the sample size the sequence targets)",
            )
        )
    if not isinstance(correction, str) or correction not in {item.value for item in Correction}:
        errors.append(
            InputError(
                ErrorCode.UNKNOWN_CORRECTION,
                "correction",
                f"correction must be one of none, holm, bh; got {correction!r}",
            )
        )
    return errors


def validate_analysis_request(
    metric_type: object, variants: Sequence[VariantStats], max_variants: int
) -> list[InputError]:
    """Request-level checks; per-variant checks only once the variant count is sane."""
    if not isinstance(metric_type, str) or metric_type not in {item.value for item in MetricType}:
        return [
            InputError(
                ErrorCode.UNKNOWN_METRIC_TYPE,
                "metric.type",
                f"metric type must be one of mean, proportion, ratio, quantile; got {metric_type!r}",
            )
        ]
    if len(variants) < 2:
        return [InputError(ErrorCode.TOO_FEW_VARIANTS, "variants", "at least a baseline and one variant are needed")]
    if len(variants) > max_variants:
        return [
            InputError(
                ErrorCode.TOO_MANY_VARIANTS,
                "variants",
                f"{len(variants)} variants exceed the limit of {max_variants}",
            )
        ]
    kind = MetricType(metric_type)
    errors: list[InputError] = []
    seen: set[str] = set()
    for index, variant in enumerate(variants):
        errors += validate_variant_stats(variant, kind, f"variants[{index}]")
        if variant.key in seen:
            errors.append(
                InputError(
                    ErrorCode.DUPLICATE_VARIANT_KEY,
                    f"variants[{index}].key",
                    f"variant key {variant.key!r} appears more than once",
                )
            )
        if isinstance(variant.key, str):
            seen.add(variant.key)
    return errors
