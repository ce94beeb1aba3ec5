"""A scorecard service on a free port, reading results from a temporary directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.conftest import ADMIN_KEY, StartService, client_for, service_env


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="session")
def start_scorecard(start_service: StartService) -> Callable[..., ServiceProcess]:
    def start(redis_url: str, results: Path, **extra: str) -> ServiceProcess:
        env = service_env(redis_url, ASSAY_RESULTS_DIR=str(results), ASSAY_SECURE_COOKIES="false", **extra)
        return start_service("services.scorecard", "ASSAY_SCORECARD_PORT", env)

    return start


@pytest.fixture(scope="session")
def scorecard(
    redis_server: RedisServer, results_dir: Path, start_scorecard: Callable[..., ServiceProcess]
) -> ServiceProcess:
    return start_scorecard(redis_server.url, results_dir)


@pytest.fixture
def owner(scorecard: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(scorecard.base_url, ADMIN_KEY) as client:
        yield client
