"""The scorecard of one experiment, as JSON."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query

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
SliceCorrection = Annotated[
    Literal["holm", "bh"] | None,
    Query(description="correction over the slice family; default: bh if the experiment's correction is bh, else holm"),
]


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


def governed_scorecard(
    document: ResultsDocument, experiment: ExperimentPublic, catalog: Catalog, slice_correction: str | None = None
) -> dict[str, Any]:
    """The scorecard plus what the catalog and the plan say about it (`governance`); `warnings`
    holds the slice checks' sentences first, then the governance ones."""
    card = build_scorecard(document, experiment, slice_correction)
    flags = governance(document, experiment, catalog)
    return {**card, "governance": flags, "warnings": [*card["warnings"], *flags["warnings"]]}


async def load_scorecard(
    key: str, registry: RegistryReader, results: ResultsStore, catalog: Catalog, slice_correction: str | None = None
) -> dict[str, Any]:
    experiment, document = await load_results(key, registry, results)
    return governed_scorecard(document, experiment, catalog, slice_correction)


@router.get("/{key}/scorecard", responses={404: error("unknown experiment or no results yet")})
async def get_scorecard(
    key: KeyPath, principal: ScorecardReader, registry: RegistryDep, results: ResultsDep, catalog: CatalogDep,
    slice_correction: SliceCorrection = None,
) -> dict[str, Any]:  # fmt: skip
    return await load_scorecard(key, registry, results, catalog, slice_correction)
