"""HTTP plumbing every service shares: request ids, access logs, body limits, errors,
health and metrics endpoints."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.auth import IDENTIFIED, parse_bearer
from services.common.errors import document_security, http_error_handler
from services.common.logs import request_id_var
from services.common.metrics import HttpMetrics, render
from services.common.ratelimit import RateLimiter

log = logging.getLogger("assay.http")
access_log = logging.getLogger("assay.access")

MAX_ERRORS_REPORTED = 20
# Metric labels stay bounded whatever method token a client sends.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Probes and scrapes are never rate limited.
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the {limit}-byte limit")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class RequestContextMiddleware:
    """Pure ASGI middleware: request id, rate limit, body size limit, access log and HTTP metrics."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, metrics: HttpMetrics, access_log: bool,
        limiter: RateLimiter | None = None,
    ) -> None:  # fmt: skip
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.access_log = access_log
        self.limiter = limiter if limiter is not None and limiter.enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        # 128 random bits as 32 hex digits, like uuid4().hex without building a UUID object.
        request_id = incoming if incoming and len(incoming) <= 64 else os.urandom(16).hex()
        token = request_id_var.set(request_id)
        # The 500 handler runs outside this middleware (in Starlette's outermost error
        # middleware), after the context variable is reset: it reads the id from the scope.
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        try:
            if self.limiter is not None and scope["path"] not in UNLIMITED_PATHS:
                client = scope.get("client")
                key = parse_bearer(_header(scope, b"authorization"))
                principal = self.limiter.identify(key) if key else None
                # Authentication reuses this (`auth.authenticate`): the key is hashed once.
                scope["state"][IDENTIFIED] = (key, principal)
                refusal = self.limiter.check_principal(principal, client and client[0])
                if refusal is not None:
                    status = 429
                    await _send_json(send, status, {"detail": refusal.message}, request_id,
                                     [(b"retry-after", str(refusal.retry_after).encode())])  # fmt: skip
                    return
            declared = _header(scope, b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
                status = 413 if declared.isdigit() else 400
                await _send_json(send, status, _too_large_or_bad_length(declared, self.max_body_bytes), request_id)
                return

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
                await send(message)

            await self.app(scope, self._limited(receive), send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            self.metrics.observe(method, route, status, elapsed)
            if self.access_log:
                access_log.info(
                    "request",
                    extra={"method": scope["method"], "path": scope["path"], "route": route,
                           "status": status, "duration_ms": round(elapsed * 1000, 3)},
                )  # fmt: skip
            request_id_var.reset(token)

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return limited_receive


def _too_large_or_bad_length(declared: str, limit: int) -> dict[str, Any]:
    if declared.isdigit():
        return {"detail": f"request body is larger than the {limit}-byte limit"}
    return {"detail": "Content-Length header is not a number"}


async def _send_json(
    send: Send, status: int, body: dict[str, Any], request_id: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer before the app runs; the request body is left unread, so the connection closes."""
    payload = JSONResponse(body).body
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        (b"x-request-id", request_id.encode()), (b"connection", b"close"), *(headers or [])]})  # fmt: skip
    await send({"type": "http.response.body", "body": payload})


def _describe_validation(exc: RequestValidationError) -> dict[str, Any]:
    errors = []
    for error in exc.errors()[:MAX_ERRORS_REPORTED]:
        location = ".".join(str(part) for part in error.get("loc", ()))
        errors.append({"loc": location, "msg": str(error.get("msg", ""))[:300]})
    summary = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:3])
    return {"detail": f"invalid request: {summary}", "errors": errors}


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Inputs are never echoed back: they may be huge or hold secrets.
    return JSONResponse(_describe_validation(exc), status_code=422)


async def redis_error_handler(request: Request, exc: Exception) -> Response:
    log.warning("redis unavailable", extra={"error": type(exc).__name__})
    return JSONResponse(
        {"detail": "the Redis store is unavailable, so nothing was changed; retry shortly"},
        status_code=503,
        headers={"Retry-After": "2"},
    )


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", None) or request_id_var.get()
    log.exception("unhandled error", extra={"request_id": request_id})
    return JSONResponse(
        {"detail": "internal error; quote the request id when reporting it", "request_id": request_id},
        status_code=500, headers={"X-Request-Id": request_id} if request_id else None,
    )  # fmt: skip


ReadinessCheck = Callable[[], Awaitable[dict[str, Any]]]


def install_common(
    app: FastAPI,
    *,
    registry: CollectorRegistry,
    readiness: ReadinessCheck,
    max_body_bytes: int,
    access_log_enabled: bool,
    before_scrape: Callable[[], None] | None = None,
) -> HttpMetrics:
    """Add health/metrics routes, error handlers and the request middleware to `app`.

    The rate limits come from `app.state.settings` (a `ServiceSettings`) and keys are told
    apart with `app.state.keyring`: every service sets both before calling this.
    `before_scrape` runs before `/metrics` answers (a worker sets its gauges there)."""
    metrics = HttpMetrics(registry)
    limiter = RateLimiter(app.state.settings.rate_limits, app.state.keyring.identify, registry)
    document_security(app)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(RedisError, redis_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def get_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", tags=["health"], summary="Readiness of the service's dependencies",
        responses={503: {"description": "not ready: the same report, with `ready` false"}},
    )  # fmt: skip
    async def get_readiness() -> Response:
        report = await readiness()
        return JSONResponse(report, status_code=200 if report.get("ready") else 503)

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", include_in_schema=False)
    async def get_metrics() -> Response:
        if before_scrape is not None:
            before_scrape()
        body, content_type = render(registry)
        return Response(body, media_type=content_type)

    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=max_body_bytes,
        metrics=metrics,
        access_log=access_log_enabled,
        limiter=limiter,
    )
    return metrics
