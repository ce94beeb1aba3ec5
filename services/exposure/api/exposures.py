"""`POST /v1/exposures` (sdk keys): which unit saw which variant, and when."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.exposure.api.deps import IngestorDep, SdkKey
from services.exposure.api.responses import INGEST_RESPONSES, request_body
from services.exposure.schemas import ExposureIn, IngestResult

router = APIRouter(prefix="/v1", tags=["exposures"])


@router.post(
    "/exposures", status_code=202, response_model=IngestResult, responses=INGEST_RESPONSES,
    openapi_extra=request_body("exposures", ExposureIn),
    summary="Log exposures; each item is accepted or rejected on its own",
)  # fmt: skip
async def create_exposures(request: Request, principal: SdkKey, ingestor: IngestorDep) -> Response:
    return await ingestor.ingest("exposure", request)
