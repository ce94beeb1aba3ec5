"""A rebalance flushes without blocking on the commit: kafka-python 3 runs the rebalance
listener on its IO thread, where a synchronous commit raises RuntimeError (found by
`make compose-test`: the surviving ingest replica crashed when its peer restarted)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka.structs import OffsetAndMetadata, TopicPartition

from services.metrics import lake
from services.metrics.ingest import FlushOnRevoke, LakeIngestor


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes = b"u1"


@dataclass
class IoThreadConsumer:
    """Like KafkaConsumer inside a rebalance callback: `commit` refuses, `commit_async` queues."""

    pending: list[Message]
    sent: list[dict[TopicPartition, int]] = field(default_factory=list)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Message]]:
        taken, self.pending = self.pending, []
        return {TopicPartition(m.topic, m.partition): [m] for m in taken}

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        raise RuntimeError("Cannot block on net.run() from the IO thread itself")

    def commit_async(
        self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = None, callback: Any = None
    ) -> None:
        assert offsets is not None
        self.sent.append({tp: meta.offset for tp, meta in offsets.items()})


def test_revoked_partitions_are_written_then_committed_asynchronously(tmp_path: Path) -> None:
    body = {"event_id": "e1", "name": "purchase", "unit_id": "u1", "value": 1.0, "properties": {},
            "timestamp": "2026-11-20T10:00:00Z", "received_at": "2026-11-20T10:00:01Z"}  # fmt: skip
    consumer = IoThreadConsumer([Message(lake.EVENTS_TOPIC, 3, 41, orjson.dumps(body))])
    ingestor = LakeIngestor(consumer, tmp_path, max_records=100, max_seconds=60)
    listener = FlushOnRevoke()
    listener.ingestor = ingestor
    ingestor.poll_once()
    listener.on_partitions_revoked({TopicPartition(lake.EVENTS_TOPIC, 3)})
    assert consumer.sent == [{TopicPartition(lake.EVENTS_TOPIC, 3): 42}]
    assert len(list(tmp_path.rglob("*.parquet"))) == 1
    assert ingestor.counters.commit_failures == 0
