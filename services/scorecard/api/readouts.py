"""Readouts and the portfolio, as JSON or Markdown (`?format=md`, for docs and chat); admin keys."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response

from services.common.catalog import Catalog
from services.common.errors import AUTHENTICATED, INVALID, STORE_UNAVAILABLE, error
from services.common.registry.reader import RegistryReader
from services.scorecard.api.deps import AdminKey, CatalogDep, RegistryDep, ResultsDep
from services.scorecard.api.scorecards import governed_scorecard, load_results
from services.scorecard.readout import build_readout, readout_markdown
from services.scorecard.results_store import ResultsStore

router = APIRouter(prefix="/v1", tags=["readouts"], responses={**AUTHENTICATED, **INVALID, **STORE_UNAVAILABLE})
KeyPath = Annotated[str, Path(min_length=1, max_length=64, examples=["checkout-button"])]
Format = Annotated[Literal["json", "md"], Query(description="`md`: Markdown for docs and chat")]
CONTENT = {"application/json": {"schema": {"type": "object"}}, "text/markdown": {"schema": {"type": "string"}}}
JSON_OR_MARKDOWN: dict[int | str, dict[str, Any]] = {
    200: {"description": "JSON, or Markdown with `?format=md`", "content": CONTENT}
}


def _answer(document: dict[str, Any], markdown: str | None) -> Response:
    if markdown is not None:
        return Response(markdown, media_type="text/markdown; charset=utf-8")
    return JSONResponse(document)


async def load_readout(key: str, registry: RegistryReader, results: ResultsStore, catalog: Catalog) -> dict[str, Any]:
    experiment, document = await load_results(key, registry, results)
    return build_readout(governed_scorecard(document, experiment, catalog), experiment, catalog)


@router.get(
    "/experiments/{key}/readout", response_class=Response,
    responses={**JSON_OR_MARKDOWN, 404: error("unknown experiment or no results yet")},
)  # fmt: skip
async def get_readout(
    key: KeyPath, principal: AdminKey, registry: RegistryDep, results: ResultsDep, catalog: CatalogDep,
    format: Format = "json",
) -> Response:  # fmt: skip
    readout = await load_readout(key, registry, results, catalog)
    return _answer(readout, readout_markdown(readout) if format == "md" else None)
