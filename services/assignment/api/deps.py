"""Dependencies of the assignment API as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.assignment.registry import Registry
from services.assignment.settings import AssignmentSettings
from services.assignment.sticky import RedisStickyResolver
from services.common.auth import Principal, require_admin, require_sdk
from services.common.registry.cache import ConfigCache


async def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def get_cache(request: Request) -> ConfigCache:
    cache: ConfigCache = request.app.state.cache
    return cache


async def get_sticky(request: Request) -> RedisStickyResolver:
    store: RedisStickyResolver = request.app.state.sticky
    return store


async def get_settings(request: Request) -> AssignmentSettings:
    settings: AssignmentSettings = request.app.state.settings
    return settings


AdminKey = Annotated[Principal, Depends(require_admin)]
SdkKey = Annotated[Principal, Depends(require_sdk)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
CacheDep = Annotated[ConfigCache, Depends(get_cache)]
StickyDep = Annotated[RedisStickyResolver, Depends(get_sticky)]
SettingsDep = Annotated[AssignmentSettings, Depends(get_settings)]
