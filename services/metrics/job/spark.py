"""SparkSession construction (one per process; tests share one per test session)."""

from __future__ import annotations

from pyspark.sql import SparkSession


def build_session(
    master: str = "local[*]", *, app_name: str = "assay-metrics", shuffle_partitions: int = 8,
    driver_memory: str = "2g", extra: dict[str, str] | None = None,
) -> SparkSession:  # fmt: skip
    builder = (
        SparkSession.builder.master(master).appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.adaptive.enabled", "true")
    )  # fmt: skip
    for key, value in (extra or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
