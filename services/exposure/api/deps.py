"""Dependencies of the exposure API as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.common.auth import Principal, require_sdk
from services.exposure.ingest import Ingestor


async def get_ingestor(request: Request) -> Ingestor:
    # async although it does no I/O: FastAPI runs plain `def` dependencies in a thread pool.
    ingestor: Ingestor = request.app.state.ingestor
    return ingestor


SdkKey = Annotated[Principal, Depends(require_sdk)]
IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]
