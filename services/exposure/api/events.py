"""`POST /v1/events` (sdk keys): product events (purchases, sessions, ...) of units."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.exposure.api.deps import IngestorDep, SdkKey
from services.exposure.api.responses import INGEST_RESPONSES, request_body
from services.exposure.schemas import EventIn, IngestResult

router = APIRouter(prefix="/v1", tags=["events"])


@router.post(
    "/events", status_code=202, response_model=IngestResult, responses=INGEST_RESPONSES,
    openapi_extra=request_body("events", EventIn),
    summary="Log product events; each item is accepted or rejected on its own",
)  # fmt: skip
async def create_events(request: Request, principal: SdkKey, ingestor: IngestorDep) -> Response:
    return await ingestor.ingest("event", request)
