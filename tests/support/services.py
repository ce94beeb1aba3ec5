"""Keys, environments, clients and request bodies for the services under test."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from deploy.processes import ServiceProcess
from tests.support.eventually import eventually

ADMIN_KEY = "test-admin-key-0123456789abcdef"
SDK_KEY = "test-sdk-key-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]

StartService = Callable[..., ServiceProcess]


def service_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "ASSAY_ENV": "test", "ASSAY_ADMIN_KEYS": ADMIN_KEY, "ASSAY_SDK_KEYS": SDK_KEY,
        "ASSAY_REDIS_URL": redis_url, "ASSAY_LOG_LEVEL": "INFO",
        # Generous: CI machines are small and busy; fault tests lower it themselves.
        "ASSAY_REDIS_TIMEOUT_MS": "2000", **extra,
    }  # fmt: skip


def exposure_env(redis_url: str, bootstrap: str, spool_dir: Path, **extra: str) -> dict[str, str]:
    defaults = {"ASSAY_KAFKA_BOOTSTRAP": bootstrap, "ASSAY_SPOOL_DIR": str(spool_dir),
                "ASSAY_KAFKA_PRODUCE_TIMEOUT_MS": "1500", "ASSAY_KAFKA_RETRY_SECONDS": "0.2",
                "ASSAY_CONFIG_REFRESH_SECONDS": "0.5"}  # fmt: skip
    return service_env(redis_url, **{**defaults, **extra})


def client_for(base_url: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=10.0)


def unique_key(prefix: str = "exp") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def experiment_body(key: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key or unique_key(),
        "name": "Test experiment",
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
    }
    body.update(fields)
    return body


def create_running(admin: httpx.Client, **fields: Any) -> dict[str, Any]:
    """Create an experiment and start it; returns the running document."""
    created = admin.post("/v1/experiments", json=experiment_body(**fields))
    assert created.status_code == 201, created.text
    started = admin.post(f"/v1/experiments/{created.json()['key']}/status", json={"status": "running"})
    assert started.status_code == 200, started.text
    return dict(started.json())


def exposure(experiment: str, unit: Any, variant: Any = "treatment", **fields: Any) -> dict[str, Any]:
    """One exposure item as the SDK posts it (fields override or add to the defaults)."""
    item = {"event_id": str(uuid.uuid4()), "experiment": experiment, "variant": variant, "unit_id": unit,
            "timestamp": int(time.time() * 1000)}  # fmt: skip
    item.update(fields)
    return item


def metric_value(exposition: str, sample_name: str, **labels: str) -> float:
    """One sample's value from a Prometheus text exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def readiness(base_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{base_url}/readyz", timeout=5).json())


def wait_until_drained(base_url: str, timeout: float = 30.0) -> dict[str, Any]:
    """Until the exposure service is connected to a broker and its spool is empty."""

    def drained() -> dict[str, Any] | None:
        report = readiness(base_url)
        spool = report["spool"]
        return report if report["broker"]["connected"] and spool["records"] == 0 and not spool["segments"] else None

    return eventually(drained, timeout, interval=0.1,
                      message=lambda: f"the spool did not drain: {readiness(base_url)}")  # fmt: skip
