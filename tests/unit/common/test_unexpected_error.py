"""A bug in a handler answers 500 with a request id the caller can quote, never a traceback."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
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


def test_a_500_names_the_request_id_and_hides_the_error() -> None:
    with TestClient(app_with_a_bug(), raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-Id": "req-123"})
    assert response.status_code == 500
    assert response.json()["request_id"] == "req-123"
    assert response.headers["x-request-id"] == "req-123"
    assert "secret internals" not in response.text


def test_a_500_without_an_incoming_id_gets_a_generated_one() -> None:
    with TestClient(app_with_a_bug(), raise_server_exceptions=False) as client:
        body = client.get("/boom").json()
    assert isinstance(body["request_id"], str) and len(body["request_id"]) == 32
    assert body["detail"].startswith("internal error")
