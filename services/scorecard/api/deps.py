"""Dependencies of the scorecard API as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from services.common.auth import Principal, authenticate, require_roles
from services.common.registry.reader import RegistryReader
from services.scorecard.results_store import ResultsStore
from services.scorecard.settings import ScorecardSettings


async def get_settings(request: Request) -> ScorecardSettings:
    settings: ScorecardSettings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> RegistryReader:
    registry: RegistryReader = request.app.state.registry
    return registry


async def get_results(request: Request) -> ResultsStore:
    store: ResultsStore = request.app.state.results
    return store


async def require_scorecard_reader(request: Request) -> Principal:
    """Admin keys; SDK keys too when ASSAY_SDK_CAN_READ_SCORECARDS=true."""
    principal = authenticate(request)
    settings: ScorecardSettings = request.app.state.settings
    if principal.role == "admin" or (principal.role == "sdk" and settings.sdk_can_read_scorecards):
        return principal
    raise HTTPException(403, "reading scorecards needs an admin key (or set ASSAY_SDK_CAN_READ_SCORECARDS=true)")


ScorecardReader = Annotated[Principal, Depends(require_scorecard_reader)]
AnyKey = Annotated[Principal, Depends(require_roles("admin", "sdk"))]
SettingsDep = Annotated[ScorecardSettings, Depends(get_settings)]
RegistryDep = Annotated[RegistryReader, Depends(get_registry)]
ResultsDep = Annotated[ResultsStore, Depends(get_results)]
