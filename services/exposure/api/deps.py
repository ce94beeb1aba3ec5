"""Dependencies of the exposure API as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.common.auth import Principal, require_sdk
from services.exposure.ingest import ItemIntake


async def get_ingestor(request: Request) -> ItemIntake:
    # async although it does no I/O: FastAPI runs plain `def` dependencies in a thread pool.
    ingestor: ItemIntake = request.app.state.ingestor
    return ingestor


SdkKey = Annotated[Principal, Depends(require_sdk)]
IngestorDep = Annotated[ItemIntake, Depends(get_ingestor)]
