"""Rate limits against a real assignment service started with low limits: 429 with a message
and Retry-After, per key and per address, counted; probes are never limited."""

from __future__ import annotations

import httpx
import pytest

from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.security.conftest import SECRETS, secret_env
from tests.security.operations import KEYS
from tests.support.services import StartService, metric_value

BURST = 5


@pytest.fixture(scope="module")
def limited(redis_server: RedisServer, start_service: StartService) -> ServiceProcess:
    # A rate so low that no token comes back while the test runs: counts are exact, no timing.
    limits = {
        "ASSAY_RATE_LIMIT_PER_SECOND": "0.001",
        "ASSAY_RATE_LIMIT_BURST": str(BURST),
        "ASSAY_RATE_LIMIT_ANONYMOUS_PER_SECOND": "0.001",
        "ASSAY_RATE_LIMIT_ANONYMOUS_BURST": str(BURST),
    }
    env = secret_env(redis_server.url, **limits)
    return start_service("services.assignment", "ASSAY_ASSIGNMENT_PORT", env)


def statuses(client: httpx.Client, count: int, method: str, path: str, **kwargs: object) -> list[int]:
    return [client.request(method, path, **kwargs).status_code for _ in range(count)]  # type: ignore[arg-type]


def test_limits_per_key_and_per_address(limited: ServiceProcess) -> None:
    with httpx.Client(base_url=limited.base_url, timeout=10) as client:
        sdk = {"Authorization": f"Bearer {KEYS['sdk']}"}
        assert statuses(client, BURST, "POST", "/v1/assign", headers=sdk, json={"unit_id": "u"}) == [200] * BURST
        refused = client.get("/v1/config", headers=sdk)  # one bucket per key, whatever the route
        assert refused.status_code == 429
        assert "rate limit" in refused.json()["detail"] and not any(s in refused.text for s in SECRETS)
        retry_after = refused.headers["retry-after"]
        assert retry_after.isdigit() and int(retry_after) >= 1

        # Another key has its own bucket.
        admin = {"Authorization": f"Bearer {KEYS['admin']}"}
        assert statuses(client, BURST, "GET", "/v1/experiments", headers=admin) == [200] * BURST
        assert client.get("/v1/experiments", headers=admin).status_code == 429

        # Without a valid key, every request from this address shares one bucket: guessing is throttled.
        guesses = [{"Authorization": f"Bearer guess-{i}"} for i in range(BURST)] + [{}]
        answers = [client.get("/v1/experiments", headers=headers).status_code for headers in guesses]
        assert answers == [401] * BURST + [429]

        # Probes and scrapes are never limited.
        for path in ("/healthz", "/readyz", "/metrics"):
            assert statuses(client, 2 * BURST, "GET", path) == [200] * (2 * BURST)
        exposition = client.get("/metrics").text
    assert metric_value(exposition, "assay_rate_limited_total", kind="key") == 2
    assert metric_value(exposition, "assay_rate_limited_total", kind="anonymous") == 1
    assert metric_value(exposition, "assay_http_requests_total", route="unmatched", status="429") == 3
