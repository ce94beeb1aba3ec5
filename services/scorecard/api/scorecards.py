"""The scorecard of one experiment, as JSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path

from services.common.catalog import Catalog
from services.common.errors import AUTHENTICATED, INVALID, STORE_UNAVAILABLE, error
from services.common.registry.errors import RegistryError
from services.common.registry.models import ExperimentPublic
from services.common.registry.reader import RegistryReader
from services.common.results import ResultsDocument
from services.scorecard.api.deps import CatalogDep, RegistryDep, ResultsDep, ScorecardReader
from services.scorecard.governance import governance
from services.scorecard.results_store import ResultsStore
from services.scorecard.scorecard import build_scorecard

router = APIRouter(
    prefix="/v1/experiments", tags=["scorecards"], responses={**AUTHENTICATED, **INVALID, **STORE_UNAVAILABLE}
)
KeyPath = Annotated[str, Path(min_length=1, max_length=64, examples=["checkout-button"])]


async def load_results(
    key: str, registry: RegistryReader, results: ResultsStore
) -> tuple[ExperimentPublic, ResultsDocument]:
    try:
        experiment = await registry.get_experiment(key)
    except RegistryError as exc:
        raise HTTPException(exc.status_code, exc.message) from exc
    document = results.latest(key)
    if document is None:
        raise HTTPException(404, f"no results for '{key}' yet; the metrics job has not published any")
    return experiment, document


def governed_scorecard(document: ResultsDocument, experiment: ExperimentPublic, catalog: Catalog) -> dict[str, Any]:
    """The scorecard plus what the catalog and the plan say about it (`governance`, `warnings`)."""
    card = build_scorecard(document, experiment)
    flags = governance(document, experiment, catalog)
    return {**card, "governance": flags, "warnings": flags["warnings"]}


async def load_scorecard(key: str, registry: RegistryReader, results: ResultsStore, catalog: Catalog) -> dict[str, Any]:
    experiment, document = await load_results(key, registry, results)
    return governed_scorecard(document, experiment, catalog)


@router.get("/{key}/scorecard", responses={404: error("unknown experiment or no results yet")})
async def get_scorecard(
    key: KeyPath, principal: ScorecardReader, registry: RegistryDep, results: ResultsDep, catalog: CatalogDep
) -> dict[str, Any]:
    return await load_scorecard(key, registry, results, catalog)
