"""Settings of the exposure service (`ASSAY_*` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import ServiceSettings

MIB = 1_048_576


class ExposureSettings(ServiceSettings):
    """The exposure service (`python -m services.exposure`)."""

    exposure_port: int = Field(8002, ge=1, le=65535, description="HTTP port")
    workers: int = Field(
        1, ge=1, le=64,
        description="worker processes on the port, each with its own producer and spool slot (>1: use more cores)",
    )  # fmt: skip
    # 1000 events with properties do not fit in the common 1 MiB default.
    max_body_bytes: int = Field(4 * MIB, ge=1024, description="request body limit; more is a 413")
    max_items: int = Field(1000, ge=1, le=10_000, description="items per request; more is a 413")
    max_future_seconds: int = Field(300, ge=0, description="how far ahead of server time a timestamp may be")
    horizon_days: float = Field(30.0, gt=0, description="timestamps older than this are rejected")
    config_refresh_seconds: float = Field(
        1.0, gt=0, le=60, description="config version re-checked this often, in case a pub/sub message was missed"
    )

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_partitions: int = Field(6, ge=1, le=10_000, description="partitions of the topics created at start-up")
    kafka_replication_factor: int = Field(1, ge=1, le=10, description="replication factor of those topics")
    kafka_produce_timeout_ms: int = Field(
        2000, ge=100, le=120_000, description="a batch not acked by then goes to the spool"
    )
    kafka_linger_ms: int = Field(5, ge=0, le=1000, description="producer linger before a batch is sent")
    kafka_batch_bytes: int = Field(262_144, ge=1024, description="producer batch size per partition")
    kafka_retry_seconds: float = Field(1.0, gt=0, le=60, description="pause between reconnect attempts")

    spool_dir: Path | None = Field(
        None, description="disk spool, one process per directory; unset: `<ASSAY_DATA_DIR>/spool`"
    )
    spool_max_bytes: int = Field(1024 * MIB, ge=4096, description="full spool: 503 + Retry-After")
    spool_segment_bytes: int = Field(16 * MIB, ge=1024, description="size at which a spool segment is closed")
    spool_replay_batch: int = Field(1000, ge=1, le=100_000, description="spooled records replayed per batch")
    spool_slots: int = Field(
        1, ge=1, le=1024,
        description="processes (replicas x workers) that may share the spool directory, each in its own slot",
    )  # fmt: skip

    @property
    def spool_path(self) -> Path:
        return self.spool_dir if self.spool_dir is not None else self.data_dir / "spool"

    @property
    def spool_slot_count(self) -> int:
        """Slots a process may look through: at least one per worker of this replica."""
        return max(self.spool_slots, self.workers)

    @property
    def produce_timeout_seconds(self) -> float:
        return self.kafka_produce_timeout_ms / 1000
