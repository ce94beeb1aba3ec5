"""Stateless statistics endpoints: analyze, SRM, power (admin or sdk keys)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException

from services.common.errors import AUTHENTICATED, TOO_LARGE, error
from services.scorecard.api.deps import AnyKey, SettingsDep
from services.scorecard.schemas import AnalyzeRequest, PowerRequest, SrmRequest
from services.scorecard.stats import (
    InputError,
    analyze_payload,
    minimum_detectable_effect,
    sample_size_per_variant,
    srm_chi_square,
)

router = APIRouter(prefix="/v1", tags=["statistics"], responses={**AUTHENTICATED, **TOO_LARGE})
INVALID: dict[int | str, dict[str, Any]] = {
    422: error(
        "the request does not validate (`errors` names each invalid field), or the statistics are "
        "inconsistent or a parameter is out of range"
    )
}


def _unprocessable(errors: list[InputError]) -> HTTPException:
    summary = "; ".join(e.message for e in errors[:3])
    return HTTPException(422, f"invalid statistics: {summary}")


ANALYZE_EXAMPLE = {
    "metric": {"name": "revenue", "type": "mean"},
    "variants": [{"key": "control", "n": 1000, "sum": 410.0, "sum_squares": 15377.0},
                 {"key": "treatment", "n": 1000, "sum": 700.0, "sum_squares": 38930.0}],
}  # fmt: skip
POWER_EXAMPLE = {"metric_type": "proportion", "baseline_mean": 0.1, "relative_mde": 0.05}


@router.post("/analyze", responses=INVALID)
async def analyze_metric(
    body: Annotated[AnalyzeRequest, Body(openapi_examples={"mean metric": {"value": ANALYZE_EXAMPLE}})],
    principal: AnyKey, settings: SettingsDep,
) -> dict[str, Any]:  # fmt: skip
    result = analyze_payload(body.model_dump(exclude_none=True), max_variants=settings.max_analyze_variants)
    if result.errors:
        raise _unprocessable(result.errors)
    return {"comparisons": [c.to_dict() for c in result.comparisons]}


@router.post("/srm", responses=INVALID)
async def check_srm(body: SrmRequest, principal: AnyKey) -> dict[str, Any]:
    result = srm_chi_square(body.counts, body.weights, threshold=body.threshold, min_units=body.min_units)
    if isinstance(result, list):
        raise _unprocessable(result)
    return result.to_dict()


@router.post("/power", responses=INVALID)
async def compute_power(
    body: Annotated[PowerRequest, Body(openapi_examples={"sample size": {"value": POWER_EXAMPLE}})], principal: AnyKey
) -> dict[str, Any]:
    variance = body.variance if body.metric_type == "mean" else None
    common = {"variance": variance, "alpha": body.alpha, "power": body.power,
              "n_variants": body.n_variants, "variance_reduction": body.variance_reduction}  # fmt: skip
    if body.relative_mde is not None:
        needed = sample_size_per_variant(body.baseline_mean, body.relative_mde, **common)  # type: ignore[arg-type]
        if isinstance(needed, InputError):
            raise _unprocessable([needed])
        return {
            "n_per_variant": needed,
            "total_units": needed * body.n_variants,
            "relative_mde": body.relative_mde,
        }
    assert body.n_per_variant is not None
    mde = minimum_detectable_effect(body.baseline_mean, body.n_per_variant, **common)  # type: ignore[arg-type]
    if not isinstance(mde, float):
        raise HTTPException(422, f"cannot compute the MDE: {mde.message}")
    return {"relative_mde": mde, "n_per_variant": body.n_per_variant}
