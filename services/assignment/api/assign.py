"""Assignment endpoints (sdk keys): the product's request path."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, HTTPException, Request, Response
from starlette.datastructures import State

from services.assignment.api.deps import CacheDep, SdkKey, SettingsDep, StickyDep
from services.assignment.assigner import UnitAnswer, assign_units
from services.assignment.metrics import AssignMetrics
from services.assignment.schemas import (
    AssignRequest,
    AssignResponse,
    BatchAssignRequest,
    BatchAssignResponse,
)
from services.common.auth import require_sdk
from services.common.bodies import body_doc, parse_body
from services.common.errors import AUTHENTICATED, INVALID, TOO_LARGE, error

router = APIRouter(prefix="/v1", tags=["assignment"], responses={**AUTHENTICATED, **INVALID, **TOO_LARGE})


def _json(payload: object) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


def _count(request: Request, answers: list[UnitAnswer]) -> None:
    metrics: AssignMetrics = request.app.state.assign_metrics
    metrics.count(answers)


@router.post("/assign", response_model=AssignResponse, openapi_extra=body_doc(AssignRequest))
async def assign_unit(request: Request) -> Response:
    # The hot path authenticates, parses and reads app state itself: FastAPI's dependency
    # and body machinery costs more per request than the assignment does.
    # A well-formed call with an sdk key is answered before routing (`api.fast`); this route
    # answers the rest (errors included) and documents the endpoint.
    await require_sdk(request)
    body = await parse_body(request, AssignRequest)
    return Response(await answer_one(request.app.state, body), media_type="application/json")


async def answer_one(state: State, body: AssignRequest) -> bytes:
    """The `/v1/assign` answer to a valid body, counted in the service metrics."""
    units = [(body.unit_id, body.attributes)]
    answers = await assign_units(state.cache.snapshot, state.sticky, units, body.experiments)
    metrics: AssignMetrics = state.assign_metrics
    metrics.count(answers)
    return orjson.dumps(answers[0].to_dict())


@router.post(
    "/assign/batch",
    response_model=BatchAssignResponse,
    responses={413: error("more units than the batch limit, or a body over the byte limit")},
)
async def assign_batch(
    body: BatchAssignRequest, request: Request, principal: SdkKey, cache: CacheDep,
    sticky: StickyDep, settings: SettingsDep,
) -> Response:  # fmt: skip
    if len(body.units) > settings.max_batch_units:
        raise HTTPException(413, f"{len(body.units)} units in one batch; send at most {settings.max_batch_units}")
    units = [(unit.unit_id, unit.attributes) for unit in body.units]
    answers = await assign_units(cache.snapshot, sticky, units, body.experiments)
    _count(request, answers)
    return _json({"results": [answer.to_dict() for answer in answers]})


@router.get("/config", responses={304: {"description": "unchanged since the given ETag"}})
async def get_config(
    principal: SdkKey, cache: CacheDep,
    if_none_match: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:  # fmt: skip
    snapshot = cache.snapshot
    headers = {"ETag": snapshot.etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and snapshot.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(snapshot.body, media_type="application/json", headers=headers)
