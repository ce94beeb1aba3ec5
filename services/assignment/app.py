"""The assignment service application: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, get_args

from assay.evaluation import Reason
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from services.assignment.api import assign, experiments
from services.assignment.api.fast import AssignFastPath
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


class StickyRoundTrips(Collector):
    """How well concurrent requests share Redis round trips (read from the resolver's batcher)."""

    def __init__(self, sticky: RedisStickyResolver) -> None:
        self.sticky = sticky

    def collect(self) -> Iterator[CounterMetricFamily]:
        batcher = self.sticky.batcher
        yield CounterMetricFamily("assay_sticky_round_trips", "pipelined sticky-store calls sent to Redis",
                                  value=batcher.batches)  # fmt: skip
        yield CounterMetricFamily("assay_sticky_lookups", "requests whose sticky lookups went to Redis",
                                  value=batcher.submissions)  # fmt: skip


class AssignMetrics:
    def __init__(self, registry: CollectorRegistry, cache: ConfigCache, sticky: RedisStickyResolver) -> None:
        self.degraded = Counter(
            "assay_assign_degraded_total",
            "assignment answers computed without the sticky store (Redis unavailable)",
            registry=registry,
        )
        assignments = Counter(
            "assay_assignments_total", "assignment decisions by reason", ["reason"], registry=registry
        )
        self.reasons = {reason: assignments.labels(reason) for reason in get_args(Reason)}
        config_version = Gauge(
            "assay_config_version", "config version served from the cache", registry=registry
        )
        config_version.set_function(lambda: cache.snapshot.version)
        registry.register(StickyRoundTrips(sticky))


def create_app(settings: AssignmentSettings | None = None) -> FastAPI:
    settings = settings or AssignmentSettings()
    redis = connect(settings.redis_url, settings.redis_timeout_ms)
    cache = ConfigCache(redis, refresh_seconds=settings.config_refresh_seconds)
    sticky = RedisStickyResolver(
        redis, retry_seconds=settings.redis_retry_seconds, cache_size=settings.sticky_cache_size
    )

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
