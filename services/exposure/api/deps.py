"""Dependencies of the exposure API as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.common.auth import Principal, require_sdk
from services.exposure.ingest import Ingestor


def get_ingestor(request: Request) -> Ingestor:
    ingestor: Ingestor = request.app.state.ingestor
    return ingestor


SdkKey = Annotated[Principal, Depends(require_sdk)]
IngestorDep = Annotated[Ingestor, Depends(get_ingestor)]
