"""The scorecard of one experiment, as JSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from services.common.errors import AUTHENTICATED, INVALID, STORE_UNAVAILABLE, error
from services.common.registry.errors import RegistryError
from services.common.registry.reader import RegistryReader
from services.scorecard.api.deps import RegistryDep, ResultsDep, ScorecardReader
from services.scorecard.results_store import ResultsStore
from services.scorecard.scorecard import build_scorecard

router = APIRouter(
    prefix="/v1/experiments", tags=["scorecards"], responses={**AUTHENTICATED, **INVALID, **STORE_UNAVAILABLE}
)
KeyPath = Annotated[str, Path(min_length=1, max_length=64, examples=["checkout-button"])]


async def load_scorecard(key: str, registry: RegistryReader, results: ResultsStore) -> dict[str, Any]:
    try:
        experiment = await registry.get_experiment(key)
    except RegistryError as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    document = results.latest(key)
    if document is None:
        raise HTTPException(404, f"no results for '{key}' yet; the metrics job has not published any")
    return build_scorecard(document, experiment)


@router.get("/{key}/scorecard", responses={404: error("unknown experiment or no results yet")})
async def get_scorecard(
    key: KeyPath, principal: ScorecardReader, registry: RegistryDep, results: ResultsDep
) -> dict[str, Any]:
    return await load_scorecard(key, registry, results)
