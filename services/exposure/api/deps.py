"""Dependencies of the exposure API as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.common.auth import Principal, require_sdk
from services.common.deps import from_app_state
from services.exposure.ingest import ItemIntake

SdkKey = Annotated[Principal, Depends(require_sdk)]
IngestorDep = Annotated[ItemIntake, Depends(from_app_state("ingestor", ItemIntake))]
