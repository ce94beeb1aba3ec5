"""Dependencies of the scorecard API as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from services.common.auth import Principal, authenticate, require_roles
from services.common.catalog import Catalog
from services.common.definitions import DefinitionHistory
from services.common.deps import from_app_state
from services.common.registry.reader import RegistryReader
from services.scorecard.results_store import ResultsStore
from services.scorecard.settings import ScorecardSettings


async def require_scorecard_reader(request: Request) -> Principal:
    """Admin keys; SDK keys too when ASSAY_SDK_CAN_READ_SCORECARDS=true."""
    principal = authenticate(request)
    settings: ScorecardSettings = request.app.state.settings
    if principal.role == "admin" or (principal.role == "sdk" and settings.sdk_can_read_scorecards):
        return principal
    raise HTTPException(403, "reading scorecards needs an admin key (or set ASSAY_SDK_CAN_READ_SCORECARDS=true)")


ScorecardReader = Annotated[Principal, Depends(require_scorecard_reader)]
AdminKey = Annotated[Principal, Depends(require_roles("admin"))]
AnyKey = Annotated[Principal, Depends(require_roles("admin", "sdk"))]
SettingsDep = Annotated[ScorecardSettings, Depends(from_app_state("settings", ScorecardSettings))]
RegistryDep = Annotated[RegistryReader, Depends(from_app_state("registry", RegistryReader))]
ResultsDep = Annotated[ResultsStore, Depends(from_app_state("results", ResultsStore))]
CatalogDep = Annotated[Catalog, Depends(from_app_state("catalog", Catalog))]
DefinitionsDep = Annotated[DefinitionHistory, Depends(from_app_state("definitions", DefinitionHistory))]
