"""POST /v1/analyze for a quantile metric: decode each variant's `quantile` block defensively,
check that the numbers could have come from real events, then `analyze_quantiles`.

A variant's block is the results document's `QuantileBlock` (services/common/results.py) and its
`n` the units; `sum` and `sum_squares` are not used. Every failure is a typed `InputError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from services.scorecard.stats.errors import ErrorCode, InputError
from services.scorecard.stats.multiple import Correction, correct_comparisons
from services.scorecard.stats.quantile import QuantileStats, analyze_quantiles
from services.scorecard.stats.results import AnalyzeResult
from services.scorecard.stats.validation import validate_parameters

COUNTS = ("n_events", "events_below", "events_below_squares", "events_squares", "events_products")
ORDER_STATISTICS = ("value", "lower_probability", "upper_probability", "lower_value", "upper_value")


def _error(field: str, message: str, code: ErrorCode = ErrorCode.INCONSISTENT_QUANTILE) -> InputError:
    return InputError(code, field, message)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _type_errors(block: Mapping[str, Any], field: str) -> list[InputError]:
    probability = block.get("probability")
    errors = [] if _is_finite(probability) and 0 < probability < 1 else [  # type: ignore[operator]
        _error(f"{field}.probability", f"{field}.probability must be a number strictly between 0 and 1",
               ErrorCode.VALUE_OUT_OF_RANGE)]  # fmt: skip
    errors += [_error(f"{field}.{name}", f"{field}.{name} must be a non-negative integer", ErrorCode.NON_INTEGER_COUNT)
               for name in COUNTS if not _is_count(block.get(name))]  # fmt: skip
    errors += [_error(f"{field}.{name}", f"{field}.{name} must be a finite number, or null without events",
                      ErrorCode.INVALID_NUMBER)
               for name in ORDER_STATISTICS
               if block.get(name) is not None and not _is_finite(block.get(name))]  # fmt: skip
    return errors


def _consistency_errors(n_units: int, b: Mapping[str, Any], field: str) -> list[InputError]:
    """Per unit 0 <= S_u <= M_u, so S^2 <= S M <= M^2 summed, S <= S^2 and M <= M^2 (integers),
    and the outer window brackets the quantile."""
    events, below = b["n_events"], b["events_below"]
    if n_units == 0 and events > 0:
        return [_error(f"{field}.n_events", f"{field}: events without units (n is 0)")]
    if below > events or not b["events_below_squares"] <= b["events_products"] <= b["events_squares"]:
        return [_error(field, f"{field}: events at or below the quantile must be a part of each unit's events "
                              "(events_below <= n_events, events_below_squares <= events_products "
                              "<= events_squares)")]  # fmt: skip
    if b["events_below_squares"] < below or b["events_squares"] < events or b["events_squares"] * n_units < events**2:
        return [_error(field, f"{field}: the sums of squares are smaller than the counts allow")]
    present = [b.get(name) is not None for name in ORDER_STATISTICS]
    if events > 0 and not all(present):
        return [_error(field, f"{field}: a variant with events needs value, the window probabilities and values")]
    if events == 0:
        return [] if not any(present) else [_error(field, f"{field}: a variant without events has null values")]
    if not b["lower_probability"] < b["probability"] < b["upper_probability"]:
        return [_error(field, f"{field}: lower_probability < probability < upper_probability is required")]
    if not b["lower_value"] <= b["value"] <= b["upper_value"]:
        return [_error(field, f"{field}: lower_value <= value <= upper_value is required")]
    return []


def quantile_stats_from_mapping(variant: object, field: str) -> tuple[str, QuantileStats | None] | list[InputError]:
    """(key, statistics) of one JSON variant; statistics None for a variant without events."""
    if not isinstance(variant, Mapping):
        return [_error(field, f"{field} must be an object", ErrorCode.INVALID_PARAMETER)]
    key, n_units, block = variant.get("key"), variant.get("n"), variant.get("quantile")
    if not isinstance(key, str) or not key:
        return [_error(f"{field}.key", f"{field}.key must be a non-empty string", ErrorCode.INVALID_VARIANT_KEY)]
    if not _is_count(n_units):
        return [_error(f"{field}.n", f"{field}.n must be a non-negative integer", ErrorCode.NON_INTEGER_COUNT)]
    if not isinstance(block, Mapping):
        return [_error(f"{field}.quantile", f"{field}: a quantile metric needs a quantile block",
                       ErrorCode.INVALID_PARAMETER)]  # fmt: skip
    errors = _type_errors(block, f"{field}.quantile") or _consistency_errors(n_units, block, f"{field}.quantile")  # type: ignore[arg-type]
    if errors:
        return errors
    if block["n_events"] == 0:
        return key, None
    return key, QuantileStats(block["probability"], n_units, *(block[name] for name in (  # type: ignore[arg-type]
        "n_events", "value", "lower_probability", "upper_probability", "lower_value", "upper_value", "events_below",
        "events_below_squares", "events_squares", "events_products")))  # fmt: skip


def _request_errors(body: Mapping[str, Any], variants: list[Any]) -> list[InputError]:
    errors = validate_parameters(body.get("alpha", 0.05), body.get("sequential_tuning", 5000.0),
                                 body.get("correction", "none"))  # fmt: skip
    errors += [_error(name, f"{name} is not available for quantile metrics (their interval is the normal one of "
                            "Deng, Knoblich & Lu 2018); leave it false", ErrorCode.INVALID_PARAMETER)
               for name in ("cuped", "sequential") if body.get(name, False) is not False]  # fmt: skip
    if len(variants) < 2:
        errors.append(_error("variants", "at least a baseline and one variant are needed", ErrorCode.TOO_FEW_VARIANTS))
    keys = [v.get("key") for v in variants if isinstance(v, Mapping)]
    if len(set(map(str, keys))) != len(keys):
        errors.append(_error("variants", "variant keys must be distinct", ErrorCode.DUPLICATE_VARIANT_KEY))
    return errors


def analyze_quantile_payload(body: Mapping[str, Any], variants: list[Any]) -> AnalyzeResult:
    """`analyze_quantiles` for a decoded request whose metric type is quantile (the caller has
    bounded the number of variants)."""
    errors = _request_errors(body, variants)
    parsed: list[tuple[str, QuantileStats | None]] = []
    for index, variant in enumerate(variants):
        item = quantile_stats_from_mapping(variant, f"variants[{index}]")
        if isinstance(item, list):
            errors += item
        else:
            parsed.append(item)
    metric = body.get("metric")
    wanted = metric.get("quantile") if isinstance(metric, Mapping) else None
    probabilities = {p for v in variants if isinstance(v, Mapping) and isinstance(v.get("quantile"), Mapping)
                     if _is_finite(p := v["quantile"].get("probability"))}  # fmt: skip
    if len(probabilities) > 1 or (wanted is not None and probabilities and probabilities != {wanted}):
        errors.append(_error("variants", "every variant's quantile.probability must be the metric's quantile"))
    if errors:
        return AnalyzeResult(errors=errors)
    alpha = body.get("alpha", 0.05)
    result = analyze_quantiles(parsed, alpha=alpha)
    comparisons = correct_comparisons(result.comparisons, Correction(body.get("correction", "none")), alpha)
    return AnalyzeResult(comparisons=comparisons, estimates=result.estimates)
