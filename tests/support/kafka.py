"""A Tansu broker for a test's lifetime, and reading what the exposure service wrote back."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.serializer import Deserializer

from deploy.broker import TansuBroker
from services.common.topics import EVENTS_TOPIC as EVENTS
from services.common.topics import EXPOSURES_TOPIC as EXPOSURES
from tests.support.eventually import eventually

__all__ = ["EVENTS", "EXPOSURES", "Message", "read_topics", "running_broker"]


@contextlib.contextmanager
def running_broker(log_path: Path) -> Iterator[TansuBroker]:
    """A fresh broker on a free port, logging to `log_path`, stopped on leaving the block."""
    server = TansuBroker(log_path=log_path).start()
    try:
        yield server
    finally:
        server.stop()


class Utf8(Deserializer):
    def deserialize(self, topic: str, headers: list[tuple[str, bytes]], data: bytes) -> str:
        return data.decode("utf-8")


class Json(Deserializer):
    def deserialize(self, topic: str, headers: list[tuple[str, bytes]], data: bytes) -> Any:
        return orjson.loads(data)


@dataclass(frozen=True)
class Message:
    topic: str
    key: str
    value: dict[str, Any]


def read_topics(bootstrap: str, topics: Iterable[str], wanted: Callable[[Message], bool]) -> list[Message]:
    """The messages of `topics` that `wanted` selects: everything acked before the call.

    Every partition is read from its start to past the end offset it had when called, and then
    until a poll comes back empty. The end offsets alone are not enough on the bundled Tansu
    broker: it reports the base offset of a partition's last batch plus one, not its last
    offset plus one (see tests/integration/exposure/test_tansu.py), so stopping there would
    leave the tail of the last batch unread."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, allow_auto_create_topics=False,
        auto_offset_reset="earliest", key_deserializer=Utf8(), value_deserializer=Json(),
    )  # fmt: skip
    try:
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        found: list[Message] = []
        empty_polls = 0

        def read_to_the_end() -> bool:
            """One poll; true once past every end offset and two polls in a row came back empty."""
            nonlocal empty_polls
            polled = consumer.poll(timeout_ms=1000)
            empty_polls = 0 if polled else empty_polls + 1
            for records in polled.values():
                messages = (Message(r.topic, r.key, r.value) for r in records)
                found.extend(m for m in messages if wanted(m))
            return empty_polls >= 2 and all(consumer.position(tp) >= end for tp, end in ends.items())

        eventually(read_to_the_end, timeout=60, interval=0, message="could not read the topics to their end")
        return found
    finally:
        consumer.close()
