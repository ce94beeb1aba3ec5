"""Settings of the metrics ingest and job (`ASSAY_*` environment variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from services.common.catalog import DEFAULT_CATALOG
from services.common.settings import ServiceSettings

__all__ = ["DEFAULT_CATALOG", "MetricsSettings"]


class MetricsSettings(ServiceSettings):
    """The metrics ingest and job (`python -m services.metrics`); they need no API keys."""

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    results_dir: Path | None = Field(
        None, description="where the job publishes results documents; unset: `<ASSAY_DATA_DIR>/results`"
    )
    spark_master: str = Field("local[*]", description="Spark master of the metrics job")
    spark_driver_memory: str = Field("2g", description="Spark driver memory")
    spark_page_size: str | None = Field(
        None,
        pattern=r"^[1-9][0-9]{0,4}[kKmM]$",
        description="spark.buffer.pageSize (e.g. `4m`); unset: Spark's, up to 64m from memory and cores. Smaller "
        "pages hold less heap between the reruns of a long-lived session",
    )
    spark_shuffle_partitions: int = Field(8, ge=1, le=100_000, description="spark.sql.shuffle.partitions of the job")
    spark_cores_max: int | None = Field(
        None, ge=1, description="spark.cores.max on a cluster: cores one job may hold (unset: all the cluster has)"
    )
    spark_log_level: str = Field(
        "WARN", description="Spark's log level (WARN shows 'Initial job has not accepted any resources')"
    )
    scheduler_status_file: Path | None = Field(
        None,
        description="status of `run --every`, read by its health check; unset: "
        "`<ASSAY_DATA_DIR>/metrics-scheduler.json`",
    )
    scheduler_round_timeout_seconds: float = Field(
        1800.0, gt=0, description="`run --every` is unhealthy once a round runs longer than this"
    )

    metrics_port: int = Field(8004, ge=0, le=65535, description="ingest /healthz and /metrics; 0 = off")
    ingest_group: str = Field("assay-metrics-ingest", description="consumer group of the ingest")
    ingest_batch_max_records: int = Field(20_000, ge=1, description="flush after this many messages")
    ingest_batch_max_seconds: float = Field(2.0, gt=0, description="flush at least this often")
    ingest_poll_ms: int = Field(200, ge=1, le=60_000, description="longest wait of one consumer poll")
    ingest_session_timeout_ms: int = Field(6000, ge=1000, description="consumer group session timeout")

    metrics_allowed_lateness_hours: float = Field(
        72.0, ge=0, description="a day's snapshot is frozen this long after the day ends"
    )
    metrics_late_threshold_hours: float = Field(
        1.0, ge=0, description="an event received later than this after its timestamp is late"
    )

    @model_validator(mode="after")
    def _keys_present_outside_dev(self) -> Self:
        """Overrides the API-key check: ingest and the job serve no authenticated endpoint."""
        return self

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def state_path(self) -> Path:
        """What the metrics job keeps between runs for incremental reruns (see job/state.py)."""
        return self.data_dir / "state"

    @property
    def results_path(self) -> Path:
        return self.results_dir or self.data_dir / "results"

    @property
    def scheduler_status_path(self) -> Path:
        return self.scheduler_status_file or self.data_dir / "metrics-scheduler.json"
