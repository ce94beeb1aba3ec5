"""The shared fixtures (a pytest plugin, registered by tests/conftest.py).

Session-wide: one Redis, one Tansu broker, one SparkSession and the services over HTTP on
free ports, each logging into a temporary directory and stopped at session end. Per test:
a Redis and a broker that the test may kill and restart (`own_redis`, `own_broker`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from deploy.broker import TansuBroker
from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.support.kafka import running_broker
from tests.support.services import (
    ADMIN_KEY,
    SDK_KEY,
    StartService,
    client_for,
    create_running,
    exposure_env,
    service_env,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


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


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """The session's broker. Suites share it, so a test reads back only what it wrote (its
    own experiment key, unit or event ids); a test that must see a topic's every record, or
    stops the broker, starts its own."""
    with running_broker(tmp_path_factory.mktemp("tansu") / "tansu.log") as server:
        yield server


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker this test may stop, kill and restart."""
    with running_broker(tmp_path / "tansu.log") as server:
        yield server


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One SparkSession for the whole session: local[2], two shuffle partitions, no UI, the job's
    default driver memory and 2m pages. At Spark's default 32m pages the whole `make test` ran out
    of heap ("Failed to allocate a page (33554416 bytes)"): a rerun from the per-unit state holds
    more broadcast hash tables at once than a full pass, each rounded up to whole pages, and the
    heap held between runs was about twice what it is at 2m."""
    from services.metrics.job.spark import build_session  # Spark starts only for the tests that use it

    session = build_session(
        "local[2]", app_name="assay-metrics-tests", shuffle_partitions=2, driver_memory="2g", page_size="2m"
    )
    yield session
    session.stop()


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
def assignment(redis_server: RedisServer, start_assignment: StartService) -> ServiceProcess:
    return start_assignment(redis_server.url)


@pytest.fixture
def admin(assignment: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(assignment.base_url, ADMIN_KEY) as client:
        yield client


@pytest.fixture
def sdk(assignment: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(assignment.base_url, SDK_KEY) as client:
        yield client


@pytest.fixture
def experiment(admin: httpx.Client) -> dict[str, Any]:
    """A running experiment of this test's own."""
    return create_running(admin)


@pytest.fixture(scope="session")
def start_exposure(tmp_path_factory: pytest.TempPathFactory, start_service: StartService) -> StartService:
    """Start exposure services, each with its own spool unless given one."""

    def start(redis_url: str, bootstrap: str, spool_dir: Path | None = None, **extra: str) -> ServiceProcess:
        base = tmp_path_factory.mktemp("exposure")
        env = exposure_env(redis_url, bootstrap, spool_dir or base / "spool", **extra)
        return start_service("services.exposure", "ASSAY_EXPOSURE_PORT", env, log_dir=base)

    return start


@pytest.fixture(scope="session")
def exposure_service(
    redis_server: RedisServer, broker: TansuBroker, start_exposure: StartService, assignment: ServiceProcess
) -> ServiceProcess:
    return start_exposure(redis_server.url, broker.bootstrap)


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's scorecard service reads results documents."""
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
