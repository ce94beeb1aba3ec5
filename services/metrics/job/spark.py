"""SparkSession construction (one per process; tests share one per test session)."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time

from pyspark.sql import SparkSession

log = logging.getLogger("services.metrics.job")


def build_session(
    master: str = "local[*]", *, app_name: str = "assay-metrics", shuffle_partitions: int = 8,
    driver_memory: str = "2g", cores_max: int | None = None, log_level: str = "WARN",
    page_size: str | None = None, extra: dict[str, str] | None = None,
) -> SparkSession:  # fmt: skip
    """`cores_max` caps the cores one application holds on a cluster, so a long-lived session
    (the scheduler) leaves room for another job; WARN keeps Spark's "Initial job has not
    accepted any resources" visible. `page_size` sets spark.buffer.pageSize: Spark's default (a
    power of two up to 64m from memory / cores / 16; 32m for 2g and 2 cores) rounds every hash
    table and sort buffer up to such pages, and a session that reruns from the per-unit state held
    about twice the heap at 32m than at 2m between runs."""
    # The per-unit arithmetic runs in Python workers (`unitmath`): this interpreter, with numpy
    # and pyarrow, unless the environment names another. PySpark reads only the variable.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master).appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.adaptive.enabled", "true")
        # The job names every lake file it reads; Spark would list more than 32 of them in a
        # job of its own (2.7 s for the 416 exposure partitions of 32 experiments).
        .config("spark.sql.sources.parallelPartitionDiscovery.threshold", "1000000")
    )  # fmt: skip
    if cores_max is not None:
        builder = builder.config("spark.cores.max", str(cores_max))
    if page_size is not None:
        builder = builder.config("spark.buffer.pageSize", page_size)
    for key, value in (extra or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(log_level)
    return session


def master_addresses(master: str) -> list[tuple[str, int]]:
    """Host and port of each master in a standalone URL (`spark://h1:7077,h2:7077`); none otherwise."""
    if not master.startswith("spark://"):
        return []
    addresses = []
    for part in master.removeprefix("spark://").split(","):
        host, _, port = part.rpartition(":")
        addresses.append((host, int(port)))
    return addresses


def wait_for_master(master: str, timeout_seconds: float = 300.0, pause_seconds: float = 2.0) -> bool:
    """Until a standalone master accepts connections (a scheduler may start before it); False
    when it still does not after `timeout_seconds` (Spark then reports the failure itself)."""
    addresses = master_addresses(master)
    deadline = time.monotonic() + timeout_seconds
    while addresses:
        for address in addresses:
            try:
                socket.create_connection(address, timeout=pause_seconds).close()
                return True
            except OSError:
                pass
        if time.monotonic() >= deadline:
            log.warning("spark master unreachable", extra={"master": master, "waited_seconds": timeout_seconds})
            return False
        log.info("waiting for the spark master", extra={"master": master})
        time.sleep(pause_seconds)
    return True
