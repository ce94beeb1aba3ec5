"""A bug in a handler answers 500 with a request id the caller can quote, never a traceback."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.auth import KeyRing
from services.common.http import install_common
from services.common.settings import ServiceSettings


def app_with_a_bug() -> FastAPI:
    app = FastAPI()
    app.state.settings = ServiceSettings(env="dev")
    app.state.keyring = KeyRing(["admin-key"], ["sdk-key"])

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    async def ready() -> dict[str, bool]:
        return {"ready": True}

    install_common(app, registry=CollectorRegistry(), readiness=ready, max_body_bytes=1024, access_log_enabled=False)
    return app


def get_boom(headers: dict[str, str]) -> httpx.Response:
    """In process over ASGI; the app's own error handling answers, nothing is re-raised."""
    transport = httpx.ASGITransport(app=app_with_a_bug(), raise_app_exceptions=False)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/boom", headers=headers)

    return asyncio.run(call())


def test_a_500_names_the_request_id_and_hides_the_error() -> None:
    response = get_boom({"X-Request-Id": "req-123"})
    assert response.status_code == 500
    assert response.json()["request_id"] == "req-123"
    assert response.headers["x-request-id"] == "req-123"
    assert "secret internals" not in response.text


def test_a_500_without_an_incoming_id_gets_a_generated_one() -> None:
    body = get_boom({}).json()
    assert isinstance(body["request_id"], str) and len(body["request_id"]) == 32
    assert body["detail"].startswith("internal error")
