"""Session fixtures: a real Redis and a real assignment service over HTTP on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess

ADMIN_KEY = "test-admin-key-0123456789abcdef"
SDK_KEY = "test-sdk-key-0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis one test may kill and restart; every write is fsynced to the AOF, as the README
    advises, so a restart on the same port and data directory brings everything back."""
    server = RedisServer(tmp_path / "redis", appendfsync="always").start()
    yield server
    server.stop()


def service_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "ASSAY_ENV": "test", "ASSAY_ADMIN_KEYS": ADMIN_KEY, "ASSAY_SDK_KEYS": SDK_KEY,
        "ASSAY_REDIS_URL": redis_url, "ASSAY_LOG_LEVEL": "INFO",
        # Generous: CI machines are small and busy; fault tests lower it themselves.
        "ASSAY_REDIS_TIMEOUT_MS": "2000", **extra,
    }  # fmt: skip


StartService = Callable[..., ServiceProcess]


@pytest.fixture(scope="session")
def start_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartService]:
    """Start any Assay service (`python -m <module>`) on a free port, logging under `log_dir`
    (a fresh temporary directory by default); every one is stopped at session end."""
    started: list[ServiceProcess] = []

    def start(module: str, port_variable: str, env: dict[str, str], log_dir: Path | None = None) -> ServiceProcess:
        name = module.rsplit(".", 1)[-1]
        logs = log_dir or tmp_path_factory.mktemp(f"{name}-logs")
        service = ServiceProcess(module, logs / f"{name}.log", env, port_variable=port_variable).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def start_assignment(start_service: StartService) -> StartService:
    """Start assignment services against any Redis."""

    def start(redis_url: str, **extra: str) -> ServiceProcess:
        return start_service("services.assignment", "ASSAY_ASSIGNMENT_PORT", service_env(redis_url, **extra))

    return start


@pytest.fixture(scope="session")
def assignment(redis_server: RedisServer, start_assignment: Callable[..., ServiceProcess]) -> ServiceProcess:
    return start_assignment(redis_server.url)


def client_for(base_url: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=base_url, headers=headers, timeout=10.0)


@pytest.fixture
def admin(assignment: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(assignment.base_url, ADMIN_KEY) as client:
        yield client


@pytest.fixture
def sdk(assignment: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(assignment.base_url, SDK_KEY) as client:
        yield client


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


def metric_value(exposition: str, sample_name: str, **labels: str) -> float:
    """One sample's value from a Prometheus text exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
