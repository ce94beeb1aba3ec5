"""Readouts and the portfolio, as JSON or Markdown (`?format=md`, for docs and chat); admin keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from services.common.catalog import Catalog
from services.common.errors import AUTHENTICATED, INVALID, STORE_UNAVAILABLE, error
from services.common.registry.models import ExperimentPublic
from services.common.registry.reader import RegistryReader
from services.common.results import ResultsDocument
from services.scorecard.api.deps import AdminKey, CatalogDep, RegistryDep, ResultsDep
from services.scorecard.api.scorecards import governed_scorecard, load_results
from services.scorecard.portfolio import build_portfolio, portfolio_markdown
from services.scorecard.readout import build_readout, readout_markdown
from services.scorecard.results_store import ResultsStore

router = APIRouter(prefix="/v1", tags=["readouts"], responses={**AUTHENTICATED, **INVALID, **STORE_UNAVAILABLE})
KeyPath = Annotated[str, Path(min_length=1, max_length=64, examples=["checkout-button"])]
RFC3339 = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"
Format = Annotated[Literal["json", "md"], Query(description="`md`: Markdown for docs and chat")]
CONTENT = {"application/json": {"schema": {"type": "object"}}, "text/markdown": {"schema": {"type": "string"}}}
JSON_OR_MARKDOWN: dict[int | str, dict[str, Any]] = {
    200: {"description": "JSON, or Markdown with `?format=md`", "content": CONTENT}
}


def only_query(*names: str) -> Any:
    """Refuse query parameters the operation does not take: a misspelt `?fromat=md` must not
    silently answer JSON."""

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - set(names))
        if unknown:
            allowed = ", ".join(names)
            raise HTTPException(422, f"unknown query parameter {', '.join(map(repr, unknown))}; this takes {allowed}")

    return Depends(check)


def _answer(document: dict[str, Any], markdown: str | None) -> Response:
    if markdown is not None:
        return Response(markdown, media_type="text/markdown; charset=utf-8")
    return JSONResponse(document)


def governed_readout(document: ResultsDocument, experiment: ExperimentPublic, catalog: Catalog) -> dict[str, Any]:
    return build_readout(governed_scorecard(document, experiment, catalog), experiment, catalog)


async def load_readout(key: str, registry: RegistryReader, results: ResultsStore, catalog: Catalog) -> dict[str, Any]:
    experiment, document = await load_results(key, registry, results)
    return governed_readout(document, experiment, catalog)


@router.get(
    "/experiments/{key}/readout", dependencies=[only_query("format")], response_class=Response,
    responses={**JSON_OR_MARKDOWN, 404: error("unknown experiment or no results yet")},
)  # fmt: skip
async def get_readout(
    key: KeyPath, principal: AdminKey, registry: RegistryDep, results: ResultsDep, catalog: CatalogDep,
    format: Format = "json",
) -> Response:  # fmt: skip
    readout = await load_readout(key, registry, results, catalog)
    return _answer(readout, readout_markdown(readout) if format == "md" else None)


async def load_portfolio(
    registry: RegistryReader, results: ResultsStore, catalog: Catalog, since: datetime | None
) -> dict[str, Any]:
    experiments = await registry.list_experiments()
    readouts = {}
    for experiment in experiments:
        document = results.latest(experiment.key)
        if document is not None:
            readouts[experiment.key] = governed_readout(document, experiment, catalog)
    return build_portfolio(experiments, readouts, catalog, datetime.now(UTC), since)


@router.get(
    "/portfolio", response_class=Response, responses=JSON_OR_MARKDOWN, dependencies=[only_query("format", "since")]
)
async def get_portfolio(
    principal: AdminKey, registry: RegistryDep, results: ResultsDep, catalog: CatalogDep, format: Format = "json",
    since: Annotated[str | None, Query(pattern=RFC3339, description="list what changed since (RFC 3339)")] = None,
) -> Response:  # fmt: skip
    try:
        since_instant = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
    except ValueError as exc:
        raise HTTPException(422, f"'since' must be an RFC 3339 date-time such as 2026-11-20T00:00:00Z: {exc}") from exc
    portfolio = await load_portfolio(registry, results, catalog, since_instant)
    return _answer(portfolio, portfolio_markdown(portfolio) if format == "md" else None)
