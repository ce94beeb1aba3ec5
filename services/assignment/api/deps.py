"""Dependencies of the assignment API as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.assignment.registry import Registry
from services.assignment.settings import AssignmentSettings
from services.assignment.sticky import RedisStickyResolver
from services.common.auth import Principal, require_admin, require_sdk
from services.common.deps import from_app_state
from services.common.registry.cache import ConfigCache

AdminKey = Annotated[Principal, Depends(require_admin)]
SdkKey = Annotated[Principal, Depends(require_sdk)]
RegistryDep = Annotated[Registry, Depends(from_app_state("registry", Registry))]
CacheDep = Annotated[ConfigCache, Depends(from_app_state("cache", ConfigCache))]
StickyDep = Annotated[RedisStickyResolver, Depends(from_app_state("sticky", RedisStickyResolver))]
SettingsDep = Annotated[AssignmentSettings, Depends(from_app_state("settings", AssignmentSettings))]
