"""The ingest loop against an in-memory consumer: durable files first, offsets after."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from kafka.structs import OffsetAndMetadata, TopicPartition

from services.common.durable import write_bytes_atomic
from services.metrics import lake
from services.metrics.ingest import LakeIngestor

EVENT = {
    "name": "purchase",
    "unit_id": "u1",
    "value": 3.5,
    "properties": {},
    "received_at": "2026-11-21T00:00:05Z",
}


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = b"u1"


@dataclass
class FakeConsumer:
    """Hands out `pending` in polls of `per_poll`; records what each commit saw on disk."""

    lake_dir: Path
    pending: list[Message]
    per_poll: int = 1000
    commits: list[tuple[dict[TopicPartition, int], int]] = field(default_factory=list)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Message]]:
        taken, self.pending = self.pending[: self.per_poll], self.pending[self.per_poll :]
        polled: dict[TopicPartition, list[Message]] = {}
        for message in taken:
            polled.setdefault(TopicPartition(message.topic, message.partition), []).append(message)
        return polled

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        assert offsets is not None, "the loop must commit explicit offsets"
        files = len(list(self.lake_dir.rglob("*.parquet")))
        self.commits.append(({tp: meta.offset for tp, meta in offsets.items()}, files))

    def commit_async(
        self, offsets: dict[TopicPartition, OffsetAndMetadata] | None = None, callback: Any = None
    ) -> None:
        self.commit(offsets)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def event(offset: int, day: int = 20, partition: int = 0) -> Message:
    body = {**EVENT, "event_id": f"e{partition}-{offset}", "timestamp": f"2026-11-{day}T23:59:59Z"}
    return Message(lake.EVENTS_TOPIC, partition, offset, orjson.dumps(body))


def exposure(offset: int, experiment: str) -> Message:
    body = {"event_id": f"x{offset}", "experiment": experiment, "variant": "control", "unit_id": "u1",
            "timestamp": "2026-11-20T10:00:00Z", "received_at": "2026-11-20T10:00:01Z"}  # fmt: skip
    return Message(lake.EXPOSURES_TOPIC, 1, offset, orjson.dumps(body))


def lake_rows(lake_dir: Path, topic: str) -> list[dict[str, object]]:
    return [row for path in sorted((lake_dir / topic).rglob("*.parquet")) for row in pq.read_table(path).to_pylist()]


def test_flush_writes_partitions_then_commits_next_offsets(tmp_path: Path) -> None:
    messages = [event(0), event(1, day=21), event(0, partition=2), exposure(7, "exp-a"), exposure(8, "exp-b")]
    consumer = FakeConsumer(tmp_path, messages)
    ingestor = LakeIngestor(consumer, tmp_path, max_records=100, max_seconds=60)
    ingestor.poll_once()
    assert consumer.commits == []  # neither size nor time reached: nothing committed yet
    ingestor.flush()
    offsets, files_at_commit = consumer.commits[0]
    assert files_at_commit == 4  # one file per (topic, event date[, experiment]), all before the commit
    assert offsets == {
        TopicPartition(lake.EVENTS_TOPIC, 0): 2, TopicPartition(lake.EVENTS_TOPIC, 2): 1,
        TopicPartition(lake.EXPOSURES_TOPIC, 1): 9,
    }  # fmt: skip
    assert (tmp_path / "assay.events" / "date=2026-11-21").is_dir()
    assert (tmp_path / "assay.exposures" / "date=2026-11-20" / "experiment=exp-b").is_dir()
    rows = lake_rows(tmp_path, lake.EVENTS_TOPIC)
    assert sorted((r["event_id"], r["kafka_partition"], r["kafka_offset"]) for r in rows) == [
        ("e0-0", 0, 0), ("e0-1", 0, 1), ("e2-0", 2, 0),
    ]  # fmt: skip
    assert all(str(r["received_at"]).startswith("2026-11-21 00:00:05") for r in rows)
    assert ingestor.counters.as_dict() == {
        "exposures": 2, "events": 3, "quarantined": 0, "files": 4, "flushes": 1, "commit_failures": 0,
    }  # fmt: skip


def test_flushes_by_size_and_by_time(tmp_path: Path) -> None:
    clock = Clock()
    consumer = FakeConsumer(tmp_path, [event(i) for i in range(25)], per_poll=10)
    ingestor = LakeIngestor(consumer, tmp_path, max_records=10, max_seconds=5, clock=clock)
    ingestor.poll_once()
    ingestor.poll_once()
    assert [offsets for offsets, _ in consumer.commits] == [{TopicPartition(lake.EVENTS_TOPIC, 0): n} for n in (10, 20)]
    ingestor.poll_once()  # 5 messages: below the size limit
    assert len(consumer.commits) == 2
    clock.now = 5.0
    ingestor.poll_once()  # nothing new, but the open batch is old enough
    assert consumer.commits[-1][0] == {TopicPartition(lake.EVENTS_TOPIC, 0): 25}
    assert len(lake_rows(tmp_path, lake.EVENTS_TOPIC)) == 25


def test_malformed_messages_are_quarantined_counted_and_committed(tmp_path: Path) -> None:
    bad = [
        Message(lake.EVENTS_TOPIC, 0, 1, b"not json"),
        Message(lake.EVENTS_TOPIC, 0, 2, orjson.dumps({**EVENT, "event_id": "e9", "timestamp": "soon"})),
        Message(lake.EVENTS_TOPIC, 0, 3, None, key=None),
    ]
    consumer = FakeConsumer(tmp_path, [event(0), *bad, event(4)])
    ingestor = LakeIngestor(consumer, tmp_path, max_records=100, max_seconds=60)
    ingestor.poll_once()
    ingestor.flush()
    assert consumer.commits[0][0] == {TopicPartition(lake.EVENTS_TOPIC, 0): 5}
    assert ingestor.counters.quarantined == 3 and ingestor.counters.events == 2
    [quarantine] = list((tmp_path / lake.QUARANTINE_DIR).glob("assay.events-*.jsonl"))
    entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [(e["offset"], e["reason"]) for e in entries] == [
        (1, "value is not JSON: invalid literal, expected 'null': line 1 column 1 (char 0)"),
        (2, "'timestamp' is not RFC 3339: 'soon'"),
        (3, "empty message value"),
    ]  # fmt: skip
    assert entries[0]["value"] == "not json" and entries[0]["topic"] == lake.EVENTS_TOPIC


def test_a_failed_write_commits_nothing_and_keeps_the_batch(tmp_path: Path) -> None:
    blocked = tmp_path / "lake"
    blocked.write_text("a file where the lake directory should be")
    consumer = FakeConsumer(tmp_path, [event(0), event(1)], per_poll=1)
    ingestor = LakeIngestor(consumer, blocked, max_records=100, max_seconds=60)
    ingestor.poll_once()
    with pytest.raises(OSError):
        ingestor.flush()
    assert consumer.commits == []
    ingestor.poll_once()  # the loop may go on (a rebalance callback swallows errors)...
    blocked.unlink()  # ...and once the disk is usable again, the next flush writes everything
    ingestor.flush()
    assert consumer.commits[-1][0] == {TopicPartition(lake.EVENTS_TOPIC, 0): 2}
    assert sorted(r["event_id"] for r in lake_rows(blocked, lake.EVENTS_TOPIC)) == ["e0-0", "e0-1"]


def test_run_stops_on_the_event_and_flushes_what_it_holds(tmp_path: Path) -> None:
    consumer = FakeConsumer(tmp_path, [event(i) for i in range(3)])
    ingestor = LakeIngestor(consumer, tmp_path, max_records=100, max_seconds=60)
    stop = threading.Event()
    original_poll = consumer.poll

    def poll_then_stop(timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Message]]:
        stop.set()
        return original_poll(timeout_ms, max_records)

    consumer.poll = poll_then_stop  # type: ignore[method-assign]
    ingestor.run(stop)
    assert consumer.commits[-1][0] == {TopicPartition(lake.EVENTS_TOPIC, 0): 3}


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "results" / "latest.json"
    write_bytes_atomic(target, b'{"v": 1}')

    def explode(handle: object) -> None:
        raise RuntimeError("disk on fire")

    from services.common.durable import write_atomic

    with pytest.raises(RuntimeError):
        write_atomic(target, explode)  # type: ignore[arg-type]
    assert target.read_bytes() == b'{"v": 1}'
    assert os.listdir(target.parent) == ["latest.json"]  # no temporary file left behind
