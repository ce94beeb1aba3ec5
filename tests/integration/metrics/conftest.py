"""Session fixtures for the metrics integration tests: a Tansu broker and one SparkSession."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from deploy.broker import TansuBroker
from services.metrics.job.spark import build_session


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    server = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "broker.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = build_session(
        "local[2]", app_name="assay-metrics-tests", shuffle_partitions=2, driver_memory="1g"
    )
    yield session
    session.stop()
