"""The exposure service application: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

from services.common.auth import KeyRing
from services.common.http import ReadinessCheck, install_common
from services.common.redis import connect
from services.common.registry.cache import ConfigCache
from services.common.topics import TOPICS
from services.exposure.api import events, exposures
from services.exposure.delivery import Delivery
from services.exposure.ingest import ItemIntake
from services.exposure.metrics import ExposureMetrics
from services.exposure.producer import KafkaSink
from services.exposure.settings import ExposureSettings
from services.exposure.spool import Spool
from services.exposure.spool_slots import claim_spool


def _readiness(ingestor: ItemIntake, spool: Spool, sink: KafkaSink) -> ReadinessCheck:
    async def readiness() -> dict[str, Any]:
        stats = spool.stats()
        full = spool.full
        return {
            "ready": ingestor.cache.loaded and not full,
            "config_loaded": ingestor.cache.loaded, "config_version": ingestor.cache.snapshot.version,
            # With several workers, the one that took this request answers for itself.
            "worker": {"pid": os.getpid(), "spool_slot": spool.directory.name},
            "broker": {"connected": sink.connected, "last_error": sink.last_error},
            "spool": {"bytes": stats.bytes, "max_bytes": spool.max_bytes, "full": full,
                      "records": stats.records, "segments": stats.segments,
                      "oldest_age_seconds": None if stats.oldest_age_seconds is None
                      else round(stats.oldest_age_seconds, 3)},
        }  # fmt: skip

    return readiness


def _lifespan(
    cache: ConfigCache, sink: KafkaSink, spool: Spool, delivery: Delivery, metrics: ExposureMetrics
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.suppress(RedisError, OSError):
            await cache.reload()
        await sink.connect()  # a first attempt; the replayer keeps trying while the broker is away
        tasks = [asyncio.create_task(cache.run_refresher()), asyncio.create_task(delivery.run_replayer()),
                 asyncio.create_task(metrics.run_refresher())]  # fmt: skip
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await sink.close()
            spool.close()
            await cache.redis.aclose()

    return lifespan


def create_app(settings: ExposureSettings | None = None) -> FastAPI:
    """Build the app. Opening the spool takes its directory lock and counts what it holds, so
    a second process on the same spool fails here, before serving."""
    settings = settings or ExposureSettings()
    redis = connect(settings.redis_url, settings.redis_timeout_ms)
    cache = ConfigCache(redis, refresh_seconds=settings.config_refresh_seconds)
    spool = claim_spool(
        settings.spool_path, settings.spool_slot_count, max_bytes=settings.spool_max_bytes,
        segment_bytes=settings.spool_segment_bytes,
    )  # fmt: skip
    sink = KafkaSink(settings, TOPICS)
    metrics_registry = CollectorRegistry()
    metrics = ExposureMetrics(metrics_registry)
    metrics.watch(spool, sink)
    delivery = Delivery(sink, spool, metrics, settings)
    ingestor = ItemIntake(settings, cache, delivery, metrics)

    app = FastAPI(
        title="Assay exposure service",
        version="0.1.0",
        description="Ingests SDK exposures and product events into Kafka, spooling to disk while the broker is away.",
        lifespan=_lifespan(cache, sink, spool, delivery, metrics),
    )
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.admin_key_list, settings.sdk_key_list)
    app.state.ingestor = ingestor
    install_common(
        app, registry=metrics_registry, readiness=_readiness(ingestor, spool, sink),
        max_body_bytes=settings.max_body_bytes, access_log_enabled=settings.access_log,
        before_scrape=metrics.refresh,
    )  # fmt: skip
    app.include_router(exposures.router)
    app.include_router(events.router)
    return app
