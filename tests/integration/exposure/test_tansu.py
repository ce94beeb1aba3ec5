"""How kafka-python 3 behaves against the bundled Tansu broker (the quirks deploy/broker.py
documents and the exposure service works around)."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from deploy.broker import TansuBroker
from services.exposure.producer import ensure_topics
from tests.support.eventually import eventually


def admin_for(broker: TansuBroker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, bootstrap_timeout_ms=5000)


def test_restart_keeps_the_port_and_forgets_topics_and_producer_ids(own_broker: TansuBroker) -> None:
    admin = admin_for(own_broker)
    ensure_topics(admin, ["quirk.topic"], partitions=6, replication=1)
    ensure_topics(admin, ["quirk.topic"], partitions=6, replication=1)  # already there: no error
    assert len(admin.describe_topics(["quirk.topic"])[0]["partitions"]) == 6
    admin.close()
    producer = KafkaProducer(
        bootstrap_servers=own_broker.bootstrap, acks="all", enable_idempotence=True,
        request_timeout_ms=1000, delivery_timeout_ms=1500, max_block_ms=1500,
    )  # fmt: skip
    producer.send("quirk.topic", key=b"k", value=b"before").get(timeout=5)

    port = own_broker.port
    own_broker.restart()
    assert own_broker.port == port
    admin = admin_for(own_broker)
    assert "quirk.topic" not in admin.list_topics()  # memory storage: a new, empty broker
    ensure_topics(admin, ["quirk.topic"], partitions=6, replication=1)
    admin.close()
    with pytest.raises(KafkaError):  # the old idempotent producer cannot recover...
        producer.send("quirk.topic", key=b"k", value=b"after").get(timeout=10)
    producer.close(timeout=5)
    fresh = KafkaProducer(bootstrap_servers=own_broker.bootstrap, acks="all", enable_idempotence=True)
    assert fresh.send("quirk.topic", key=b"k", value=b"after").get(timeout=5).offset == 0  # ...a new one can
    fresh.close()


def test_unknown_topics_are_auto_created_with_4_partitions(own_broker: TansuBroker) -> None:
    producer = KafkaProducer(bootstrap_servers=own_broker.bootstrap)  # allow_auto_create_topics=True
    producer.send("auto.created", value=b"v").get(timeout=5)
    producer.close()
    admin = admin_for(own_broker)
    assert len(admin.describe_topics(["auto.created"])[0]["partitions"]) == 4
    admin.close()


def test_consumer_groups_join_quickly_and_resume_from_committed_offsets(own_broker: TansuBroker) -> None:
    admin = admin_for(own_broker)
    ensure_topics(admin, ["group.topic"], partitions=2, replication=1)
    admin.close()
    producer = KafkaProducer(bootstrap_servers=own_broker.bootstrap, acks="all", enable_idempotence=True)
    for i in range(10):
        producer.send("group.topic", key=f"k{i}".encode(), value=f"v{i}".encode())
    producer.flush()
    group = f"g-{uuid.uuid4().hex[:8]}"

    def consume(expect: int) -> tuple[list[bytes], float]:
        consumer = KafkaConsumer(
            "group.topic", bootstrap_servers=own_broker.bootstrap, group_id=group,
            auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=6000,
            heartbeat_interval_ms=1000, allow_auto_create_topics=False,
        )  # fmt: skip
        started, values = time.monotonic(), list[bytes]()

        def received() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                values.extend(record.value for record in records)
            return len(values) >= expect

        eventually(received, timeout=15, interval=0, message=lambda: f"{len(values)} of {expect} records")
        elapsed = time.monotonic() - started
        consumer.commit()
        consumer.close()
        return values, elapsed

    first, elapsed = consume(10)
    assert sorted(first) == sorted(f"v{i}".encode() for i in range(10)) and elapsed < 10
    producer.send("group.topic", key=b"k", value=b"later").get(timeout=5)
    producer.close()
    second, _ = consume(1)
    assert second == [b"later"]  # the group resumed after its committed offsets


def test_end_offsets_point_into_the_last_batch_not_past_it(own_broker: TansuBroker) -> None:
    """Tansu's ListOffsets(latest) answers the last batch's base offset + 1 where Kafka answers
    the last offset + 1. A reader that stops at the end offsets misses the tail of each
    partition's last batch, which is why tests/integration/exposure/conftest.py reads past them.
    Nothing is lost: a fetch still serves the whole batch."""
    admin = admin_for(own_broker)
    ensure_topics(admin, ["offsets.topic"], partitions=1, replication=1)
    admin.close()
    producer = KafkaProducer(bootstrap_servers=own_broker.bootstrap, acks="all", linger_ms=100)
    futures = [producer.send("offsets.topic", value=f"v{i}".encode()) for i in range(5)]  # one batch
    producer.flush()
    assert [f.get(timeout=5).offset for f in futures] == [0, 1, 2, 3, 4]
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=own_broker.bootstrap, auto_offset_reset="earliest")
    partition = TopicPartition("offsets.topic", 0)
    assert consumer.end_offsets([partition])[partition] == 1  # Kafka would say 5
    consumer.assign([partition])
    values: list[bytes] = []

    def whole_batch() -> bool:
        values.extend(r.value for records in consumer.poll(timeout_ms=200).values() for r in records)
        return len(values) >= 5

    eventually(whole_batch, timeout=10, interval=0, message=lambda: f"the batch's tail is missing: {values}")
    consumer.close()
    assert values == [f"v{i}".encode() for i in range(5)]
