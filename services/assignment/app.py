"""The assignment service application: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from services.assignment.api import assign, experiments
from services.assignment.api.fast import AssignFastPath
from services.assignment.metrics import AssignMetrics
from services.assignment.redis_link import RedisLink
from services.assignment.registry import Registry
from services.assignment.schemas import AssignRequest
from services.assignment.settings import AssignmentSettings
from services.assignment.sticky import RedisStickyResolver
from services.common.auth import KeyRing
from services.common.bodies import document_models
from services.common.catalog import load_catalog
from services.common.http import install_common
from services.common.redis import connect, reachable
from services.common.registry.cache import ConfigCache


def create_app(settings: AssignmentSettings | None = None) -> FastAPI:
    settings = settings or AssignmentSettings()
    redis = connect(settings.redis_url, settings.redis_timeout_ms)
    cache = ConfigCache(redis, refresh_seconds=settings.config_refresh_seconds)
    sticky = RedisStickyResolver(
        RedisLink(settings.redis_url, settings.redis_timeout_ms / 1000),
        retry_seconds=settings.redis_retry_seconds, cache_size=settings.sticky_cache_size,
    )  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.suppress(RedisError, OSError):
            await cache.reload()
        refresher = asyncio.create_task(cache.run_refresher())
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            sticky.link.close()
            await redis.aclose()

    app = FastAPI(
        title="Assay assignment service",
        version="0.1.0",
        description="Experiment registry and sticky hash-based assignment of units to variants.",
        lifespan=lifespan,
    )
    metrics_registry = CollectorRegistry()
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.admin_key_list, settings.sdk_key_list)
    app.state.registry = Registry(
        redis, catalog=load_catalog(settings.metrics_catalog), max_audit_entries=settings.max_audit_entries
    )
    app.state.cache = cache
    app.state.sticky = sticky
    app.state.assign_metrics = AssignMetrics(metrics_registry, cache, sticky)

    async def readiness() -> dict[str, Any]:
        redis_ok = await reachable(redis)
        return {"ready": redis_ok and cache.loaded, "redis": redis_ok, "config_loaded": cache.loaded,
                "config_version": cache.snapshot.version}  # fmt: skip

    # Added before the shared middleware, so it runs inside it (see `api.fast`).
    app.add_middleware(AssignFastPath)
    install_common(
        app, registry=metrics_registry, readiness=readiness,
        max_body_bytes=settings.max_body_bytes, access_log_enabled=settings.access_log,
    )  # fmt: skip
    app.include_router(experiments.router)
    app.include_router(assign.router)
    document_models(app, AssignRequest)
    return app
