"""The scorecard service application: `create_app(settings)`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from assay.timefmt import utc_now_rfc3339
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.auth import KeyRing
from services.common.catalog import load_catalog
from services.common.definitions import DefinitionHistory
from services.common.http import install_common
from services.common.redis import connect, reachable
from services.common.registry.reader import RegistryReader
from services.scorecard.api import analysis, catalog, pages, readouts, scorecards
from services.scorecard.pages.render import STATIC
from services.scorecard.results_store import ResultsStore
from services.scorecard.settings import ScorecardSettings

# Pages load nothing but their own stylesheet: no scripts, no other hosts.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeadersMiddleware:
    """Adds `SECURITY_HEADERS` to every response. Pure ASGI: Starlette's BaseHTTPMiddleware
    would wrap an error raised while the body streams in (413) into an unrelated 400/500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if headers.get("content-type", "").startswith("text/html"):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: ScorecardSettings | None = None) -> FastAPI:
    settings = settings or ScorecardSettings()
    redis = connect(settings.redis_url, settings.redis_timeout_ms)
    definitions = DefinitionHistory(redis)
    metric_catalog = load_catalog(settings.metrics_catalog)  # a catalog it cannot use stops the start

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.suppress(RedisError, OSError):  # recorded again on every catalog read
            await definitions.record(metric_catalog.metrics, utc_now_rfc3339())
        yield
        await redis.aclose()

    description = "Statistics (SRM, lift with intervals, CUPED, sequential tests) and scorecards."
    app = FastAPI(title="Assay scorecard service", version="0.1.0", lifespan=lifespan, description=description)
    app.state.settings = settings
    app.state.keyring = KeyRing(settings.admin_key_list, settings.sdk_key_list)
    app.state.registry = RegistryReader(redis)
    app.state.results = ResultsStore(settings.results_path)
    app.state.catalog = metric_catalog
    app.state.definitions = definitions

    async def readiness() -> dict[str, Any]:
        redis_ok = await reachable(redis)
        return {"ready": redis_ok, "redis": redis_ok, "results_dir": str(settings.results_path),
                "experiments_with_results": len(app.state.results.experiments())}  # fmt: skip

    install_common(app, registry=CollectorRegistry(), readiness=readiness,
                   max_body_bytes=settings.max_body_bytes, access_log_enabled=settings.access_log)  # fmt: skip
    app.add_middleware(SecurityHeadersMiddleware)  # outermost: the common layer's 413 and 429 get them too
    app.include_router(analysis.router)
    app.include_router(scorecards.router)
    app.include_router(catalog.router)
    app.include_router(readouts.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
