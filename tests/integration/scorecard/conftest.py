"""A scorecard service on a free port, reading results from a temporary directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.conftest import ADMIN_KEY, client_for, service_env


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


@pytest.fixture(scope="session")
def start_scorecard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(redis_url: str, results: Path, **extra: str) -> ServiceProcess:
        logs = tmp_path_factory.mktemp("scorecard-logs")
        env = service_env(redis_url, ASSAY_RESULTS_DIR=str(results), ASSAY_SECURE_COOKIES="false", **extra)
        service = ServiceProcess("services.scorecard", logs / "scorecard.log", env,
                                 port_variable="ASSAY_SCORECARD_PORT").start()  # fmt: skip
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def scorecard(
    redis_server: RedisServer, results_dir: Path, start_scorecard: Callable[..., ServiceProcess]
) -> ServiceProcess:
    return start_scorecard(redis_server.url, results_dir)


@pytest.fixture
def owner(scorecard: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(scorecard.base_url, ADMIN_KEY) as client:
        yield client
