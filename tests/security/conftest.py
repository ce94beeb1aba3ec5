"""The three HTTP services, started with distinctive keys and logging into one directory
that the tests read back (keys must never show up there)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deploy.broker import TansuBroker
from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.support.services import StartService, service_env

# Random per run, long and easy to spot: any occurrence in a log or body is a leak.
ADMIN_SECRET = f"SecAdmin{secrets.token_hex(16)}"
SDK_SECRET = f"SecSdk{secrets.token_hex(16)}"
SECRETS = (ADMIN_SECRET, SDK_SECRET)
MODULES = {
    "assignment": ("services.assignment", "ASSAY_ASSIGNMENT_PORT"),
    "exposure": ("services.exposure", "ASSAY_EXPOSURE_PORT"),
    "scorecard": ("services.scorecard", "ASSAY_SCORECARD_PORT"),
}


@dataclass(frozen=True)
class Stack:
    services: dict[str, ServiceProcess]
    log_dir: Path
    results_dir: Path

    def url(self, name: str) -> str:
        return self.services[name].base_url

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log")))


def secret_env(redis_url: str, **extra: str) -> dict[str, str]:
    return service_env(redis_url, ASSAY_ADMIN_KEYS=ADMIN_SECRET, ASSAY_SDK_KEYS=SDK_SECRET,
                       ASSAY_LOG_LEVEL="DEBUG", **extra)  # fmt: skip


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer, broker: TansuBroker,
    start_service: StartService,
) -> Stack:  # fmt: skip
    """Assignment, exposure and scorecard with their default limits (body size, rate) and the
    secret keys; DEBUG logs, so whatever any logger says about a request is captured. They share
    the session broker: these tests read nothing back from its topics."""
    base = tmp_path_factory.mktemp("security")
    log_dir, results_dir = base / "logs", base / "results"
    results_dir.mkdir()
    extra = {
        "assignment": {},
        "exposure": {"ASSAY_KAFKA_BOOTSTRAP": broker.bootstrap, "ASSAY_SPOOL_DIR": str(base / "spool"),
                     "ASSAY_CONFIG_REFRESH_SECONDS": "0.5"},
        "scorecard": {"ASSAY_RESULTS_DIR": str(results_dir), "ASSAY_SECURE_COOKIES": "false"},
    }  # fmt: skip
    services = {
        name: start_service(module, port_variable, secret_env(redis_server.url, **extra[name]), log_dir=log_dir)
        for name, (module, port_variable) in MODULES.items()
    }
    return Stack(services, log_dir, results_dir)


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """One client for every request (building one per request costs more than the request)."""
    with httpx.Client(timeout=30) as client:
        yield client
