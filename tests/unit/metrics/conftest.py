"""One SparkSession for the whole test session (local[2], few shuffle partitions, no UI)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from services.metrics.job.spark import build_session


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = build_session(
        "local[2]", app_name="assay-metrics-tests", shuffle_partitions=2, driver_memory="1g"
    )
    yield session
    session.stop()
