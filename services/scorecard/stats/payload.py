"""Turn a decoded POST /v1/analyze JSON body into `analyze(...)` arguments, defensively.

The API layer may validate with pydantic first; this path also stands alone, so any JSON
value (wrong types, missing fields, thousands of variants) ends as typed `InputError`s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.scorecard.stats.analyze import analyze
from services.scorecard.stats.errors import ErrorCode, InputError
from services.scorecard.stats.quantile_payload import analyze_quantile_payload
from services.scorecard.stats.results import AnalyzeResult
from services.scorecard.stats.sequential import DEFAULT_SEQUENTIAL_TUNING
from services.scorecard.stats.sufficient import (
    CovariateStats,
    DenominatorStats,
    SampleStats,
    VariantStats,
)
from services.scorecard.stats.validation import DEFAULT_MAX_VARIANTS

_MISSING = object()


def _count(value: object) -> object:
    """JSON numbers like 1000.0 are accepted as counts; anything else is left for validation."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _block(payload: object, field: str, names: tuple[str, ...]) -> dict[str, Any] | InputError:
    if not isinstance(payload, Mapping):
        return InputError(ErrorCode.INVALID_NUMBER, field, f"{field} must be an object")
    values = {name: payload.get(name, _MISSING) for name in names}
    for name, value in values.items():
        if value is _MISSING:
            return InputError(ErrorCode.INVALID_NUMBER, f"{field}.{name}", f"{field}.{name} is required")
    return values


def variant_stats_from_mapping(payload: object, field: str) -> VariantStats | InputError:
    """Build VariantStats from one JSON variant object; values are validated later."""
    sample = _block(payload, field, ("key", "n", "sum", "sum_squares"))
    if isinstance(sample, InputError):
        return sample
    assert isinstance(payload, Mapping)
    covariate = denominator = None
    if payload.get("covariate") is not None:
        block = _block(payload["covariate"], f"{field}.covariate", ("sum", "sum_squares", "sum_products"))
        if isinstance(block, InputError):
            return block
        products = payload["covariate"].get("denominator_products")
        covariate = CovariateStats(**block, denominator_products=products)
    if payload.get("denominator") is not None:
        block = _block(payload["denominator"], f"{field}.denominator", ("sum", "sum_squares", "sum_products"))
        if isinstance(block, InputError):
            return block
        denominator = DenominatorStats(**block)
    return VariantStats(
        key=sample["key"],
        sample=SampleStats(_count(sample["n"]), sample["sum"], sample["sum_squares"]),  # type: ignore[arg-type]
        covariate=covariate,
        denominator=denominator,
    )


def analyze_payload(body: object, *, max_variants: int = DEFAULT_MAX_VARIANTS) -> AnalyzeResult:
    """`analyze` for a decoded JSON body shaped as in docs/api.md `POST /v1/analyze`."""
    if not isinstance(body, Mapping):
        return AnalyzeResult(
            errors=[InputError(ErrorCode.INVALID_PARAMETER, "", "the request body must be a JSON object")]
        )
    metric = body.get("metric")
    metric_type = metric.get("type") if isinstance(metric, Mapping) else None
    raw_variants = body.get("variants")
    if not isinstance(raw_variants, list):
        return AnalyzeResult(
            errors=[InputError(ErrorCode.TOO_FEW_VARIANTS, "variants", "variants must be a list of variant objects")]
        )
    if len(raw_variants) > max_variants:
        return AnalyzeResult(
            errors=[
                InputError(
                    ErrorCode.TOO_MANY_VARIANTS,
                    "variants",
                    f"{len(raw_variants)} variants exceed the limit of {max_variants}",
                )
            ]
        )
    if metric_type == "quantile":
        return analyze_quantile_payload(body, raw_variants)
    variants: list[VariantStats] = []
    errors: list[InputError] = []
    for index, raw in enumerate(raw_variants):
        parsed = variant_stats_from_mapping(raw, f"variants[{index}]")
        if isinstance(parsed, InputError):
            errors.append(parsed)
        else:
            variants.append(parsed)
    flags = {name: body.get(name, False) for name in ("cuped", "sequential")}
    errors += [
        InputError(ErrorCode.INVALID_PARAMETER, name, f"{name} must be true or false")
        for name, value in flags.items()
        if not isinstance(value, bool)
    ]
    if errors:
        return AnalyzeResult(errors=errors)
    return analyze(
        metric_type,  # type: ignore[arg-type]  # validated inside analyze
        variants,
        alpha=body.get("alpha", 0.05),
        cuped=flags["cuped"],
        sequential=flags["sequential"],
        sequential_tuning=body.get("sequential_tuning", DEFAULT_SEQUENTIAL_TUNING),
        correction=body.get("correction", "none"),
        max_variants=max_variants,
    )
