"""`python -m services.metrics ingest`: Kafka -> Parquet lake, at least once.

Messages accumulate in a micro-batch; a flush writes one Parquet file per (topic, event
date[, experiment]) with a temporary name, fsyncs it and its directory, renames it, appends
quarantined messages (fsynced), and only then commits the batch's offsets. A crash at any
point therefore loses nothing: uncommitted messages are read again, and the duplicates
that may cause are removed by `event_id` in the job.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from assay.timefmt import utc_now_rfc3339
from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from services.common.durable import append_durably, write_atomic
from services.common.topics import EXPOSURES_TOPIC, TOPICS
from services.metrics import lake
from services.metrics.health import HealthServer
from services.metrics.records import Malformed, Row, parse_message
from services.metrics.settings import MetricsSettings

log = logging.getLogger("services.metrics.ingest")
PartitionKey = tuple[str, date, str | None]  # topic, event date, experiment (exposures only)


class Consumer(Protocol):
    """The part of KafkaConsumer the loop uses."""

    def poll(self, timeout_ms: int = ..., max_records: int | None = ...) -> dict[TopicPartition, list[Any]]: ...
    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = ...) -> None: ...
    def commit_async(
        self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = ..., callback: Any = ...
    ) -> Any: ...


@dataclass
class Counters:
    exposures: int = 0
    events: int = 0
    quarantined: int = 0
    files: int = 0
    flushes: int = 0
    commit_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Batch:
    rows: dict[PartitionKey, list[Row]] = field(default_factory=lambda: defaultdict(list))
    quarantine: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    messages: int = 0
    opened_at: float | None = None


def quarantine_line(record: Any, reason: str) -> bytes:
    raw = record.value.decode("utf-8", errors="replace") if record.value is not None else None
    key = record.key.decode("utf-8", errors="replace") if record.key is not None else None
    entry = {
        "quarantined_at": utc_now_rfc3339(),
        "topic": record.topic, "partition": record.partition, "offset": record.offset,
        "reason": reason, "key": key, "value": raw,
    }  # fmt: skip
    return orjson.dumps(entry) + b"\n"


def write_partition(lake_dir: Path, key: PartitionKey, rows: list[Row]) -> Path:
    topic, day, experiment = key
    table = pa.Table.from_pylist(rows, schema=lake.SCHEMAS[topic])
    final = lake.partition_dir(lake_dir, topic, day, experiment) / lake.new_file_name()
    return write_atomic(final, lambda handle: pq.write_table(table, handle))


class LakeIngestor:
    """The micro-batching loop; the consumer is injected so tests can drive it directly."""

    def __init__(self, consumer: Consumer, lake_dir: Path, *, max_records: int, max_seconds: float,
                 poll_ms: int = 200, clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.consumer = consumer
        self.lake_dir = lake_dir
        self.max_records = max_records
        self.max_seconds = max_seconds
        self.poll_ms = poll_ms
        self.clock = clock
        self.batch = Batch()
        self.counters = Counters()
        self.last_flush_at: float | None = None

    def snapshot(self) -> dict[str, Any]:
        """Counters for the health surface (read from its thread; plain ints, no lock needed)."""
        return {"counters": self.counters.as_dict(), "last_flush_at": self.last_flush_at,
                "pending_messages": self.batch.messages}  # fmt: skip

    def add(self, record: Any) -> None:
        batch = self.batch
        if batch.opened_at is None:
            batch.opened_at = self.clock()
        batch.messages += 1
        batch.next_offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
        try:
            row = parse_message(record.topic, record.value)
        except Malformed as exc:
            batch.quarantine[record.topic].append(quarantine_line(record, str(exc)))
            return
        row["kafka_partition"], row["kafka_offset"] = record.partition, record.offset
        experiment = row["experiment"] if record.topic == EXPOSURES_TOPIC else None
        batch.rows[(record.topic, row["timestamp"].date(), experiment)].append(row)

    def due(self) -> bool:
        opened = self.batch.opened_at
        return opened is not None and (
            self.batch.messages >= self.max_records or self.clock() - opened >= self.max_seconds
        )

    def flush(self, *, wait_for_commit: bool = True) -> None:
        """Make the batch durable, then commit its offsets. If writing fails the batch is kept
        (nothing is committed), so a retry or a restart writes it again: never a gap.
        `wait_for_commit=False` sends the commit without waiting (see `FlushOnRevoke`)."""
        batch = self.batch
        if not batch.next_offsets:
            return
        for key in sorted(batch.rows, key=lambda key: (key[0], key[1], key[2] or "")):
            write_partition(self.lake_dir, key, batch.rows[key])
        today = datetime.now(UTC).date()
        for topic, lines in batch.quarantine.items():
            append_durably(lake.quarantine_path(self.lake_dir, topic, today), b"".join(lines))
        self.batch = Batch()
        self.commit(batch.next_offsets, wait=wait_for_commit)
        self.count(batch)
        log.info("ingest flush", extra={"batch_messages": batch.messages, "totals": self.counters.as_dict()})

    def count(self, batch: Batch) -> None:
        for (topic, _, _), rows in batch.rows.items():
            if topic == EXPOSURES_TOPIC:
                self.counters.exposures += len(rows)
            else:
                self.counters.events += len(rows)
        self.counters.files += len(batch.rows)
        self.counters.quarantined += sum(len(lines) for lines in batch.quarantine.values())
        self.counters.flushes += 1
        self.last_flush_at = time.time()

    def commit(self, next_offsets: dict[TopicPartition, int], *, wait: bool = True) -> None:
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in next_offsets.items()}
        try:
            if wait:
                self.consumer.commit(offsets)
            else:
                self.consumer.commit_async(offsets, callback=self._async_commit_done)
        except KafkaError as exc:
            self._commit_failed(exc)

    def _async_commit_done(self, offsets: object, response: object) -> None:
        if isinstance(response, BaseException):
            self._commit_failed(response)

    def _commit_failed(self, exc: BaseException) -> None:
        # The data is durable; the group will re-deliver it and the job deduplicates.
        self.counters.commit_failures += 1
        log.warning("offset commit failed; messages will be read again", extra={"error": repr(exc)})

    def poll_once(self) -> None:
        polled = self.consumer.poll(timeout_ms=self.poll_ms, max_records=self.max_records)
        for records in polled.values():
            for record in records:
                self.add(record)
                if self.batch.messages >= self.max_records:
                    self.flush()
        if self.due():
            self.flush()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll_once()
        self.flush()


class FlushOnRevoke(ConsumerRebalanceListener):
    """Partitions leaving this member: write and commit what was read from them first."""

    def __init__(self) -> None:
        self.ingestor: LakeIngestor | None = None

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # kafka-python 3 calls this on its IO thread, where a synchronous commit raises
        # RuntimeError (it would crash the ingest on every rebalance). The asynchronous commit
        # goes out on the coordinator connection ahead of this member's JoinGroup, so the
        # broker applies it before the partitions move to another member.
        if self.ingestor is not None:
            self.ingestor.flush(wait_for_commit=False)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info(
            "partitions assigned",
            extra={"partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)},
        )


def make_consumer(settings: MetricsSettings, listener: ConsumerRebalanceListener) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","), group_id=settings.ingest_group,
        client_id="assay-metrics-ingest", enable_auto_commit=False, auto_offset_reset="earliest",
        session_timeout_ms=settings.ingest_session_timeout_ms,
        heartbeat_interval_ms=max(500, settings.ingest_session_timeout_ms // 3),
        max_poll_records=settings.ingest_batch_max_records, allow_auto_create_topics=False,
        metadata_max_age_ms=30_000,  # topics created after start-up are picked up within 30 s
    )  # fmt: skip
    consumer.subscribe(list(TOPICS), listener=listener)
    return consumer


def remove_stale_temp_files(lake_dir: Path) -> None:
    for path in lake.stale_temp_files(lake_dir):
        path.unlink(missing_ok=True)


def run_ingest(settings: MetricsSettings, stop: threading.Event | None = None) -> Counters:
    """Consume until SIGTERM/SIGINT (or `stop`), then flush, commit and close."""
    stop = stop or threading.Event()
    logging.getLogger("kafka").setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    remove_stale_temp_files(settings.lake_dir)
    listener = FlushOnRevoke()
    consumer = make_consumer(settings, listener)
    ingestor = LakeIngestor(
        consumer, settings.lake_dir, max_records=settings.ingest_batch_max_records,
        max_seconds=settings.ingest_batch_max_seconds, poll_ms=settings.ingest_poll_ms,
    )  # fmt: skip
    listener.ingestor = ingestor
    health = HealthServer(settings.host, settings.metrics_port, ingestor.snapshot).start() if (
        settings.metrics_port
    ) else None  # fmt: skip
    log.info("ingest started", extra={"bootstrap": settings.kafka_bootstrap, "lake": str(settings.lake_dir),
                                      "port": settings.metrics_port or None})  # fmt: skip
    try:
        ingestor.run(stop)
    finally:
        listener.ingestor = None
        consumer.close(autocommit=False)
        if health is not None:
            health.stop()
    log.info("ingest stopped", extra={"totals": ingestor.counters.as_dict()})
    return ingestor.counters
