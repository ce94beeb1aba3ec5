"""Session fixtures for the exposure service: a real Tansu broker and the service over HTTP,
against the session Redis and assignment service of tests/conftest.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.serializer import Deserializer

from deploy.broker import TansuBroker
from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.conftest import SDK_KEY, StartService, client_for, create_running, service_env

EXPOSURES = "assay.exposures"
EVENTS = "assay.events"


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


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    server = TansuBroker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log").start()
    yield server
    server.stop()


def exposure_env(redis_url: str, bootstrap: str, spool_dir: Path, **extra: str) -> dict[str, str]:
    defaults = {"ASSAY_KAFKA_BOOTSTRAP": bootstrap, "ASSAY_SPOOL_DIR": str(spool_dir),
                "ASSAY_KAFKA_PRODUCE_TIMEOUT_MS": "1500", "ASSAY_KAFKA_RETRY_SECONDS": "0.2",
                "ASSAY_CONFIG_REFRESH_SECONDS": "0.5"}  # fmt: skip
    return service_env(redis_url, **{**defaults, **extra})


@pytest.fixture(scope="session")
def start_exposure(
    tmp_path_factory: pytest.TempPathFactory, start_service: StartService
) -> Callable[..., ServiceProcess]:
    """Start exposure services, each with its own spool unless given one."""

    def start(redis_url: str, bootstrap: str, spool_dir: Path | None = None, **extra: str) -> ServiceProcess:
        base = tmp_path_factory.mktemp("exposure")
        env = exposure_env(redis_url, bootstrap, spool_dir or base / "spool", **extra)
        return start_service("services.exposure", "ASSAY_EXPOSURE_PORT", env, log_dir=base)

    return start


@pytest.fixture(scope="session")
def exposure_service(
    redis_server: RedisServer, broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    assignment: ServiceProcess,
) -> ServiceProcess:  # fmt: skip
    return start_exposure(redis_server.url, broker.bootstrap)


@pytest.fixture
def ingest(exposure_service: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(exposure_service.base_url, SDK_KEY) as client:
        yield client


@pytest.fixture
def experiment(admin: httpx.Client) -> dict[str, Any]:
    return create_running(admin)


def exposure(experiment: str, unit: Any, variant: Any = "treatment", **fields: Any) -> dict[str, Any]:
    item = {"event_id": str(uuid.uuid4()), "experiment": experiment, "variant": variant, "unit_id": unit,
            "timestamp": int(time.time() * 1000)}  # fmt: skip
    item.update(fields)
    return item


def read_topics(bootstrap: str, topics: Iterable[str], wanted: Callable[[Message], bool]) -> list[Message]:
    """The messages of `topics` that `wanted` selects: everything acked before the call.

    Every partition is read from its start to past the end offset it had when called, and then
    until a poll comes back empty. The end offsets alone are not enough on the bundled Tansu
    broker: it reports the base offset of a partition's last batch plus one, not its last
    offset plus one (see test_tansu.py), so stopping there would leave the tail of the last
    batch unread."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, allow_auto_create_topics=False,
        auto_offset_reset="earliest", key_deserializer=Utf8(), value_deserializer=Json(),
    )  # fmt: skip
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        found: list[Message] = []
        deadline, empty_polls = time.monotonic() + 60, 0
        while empty_polls < 2 or any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, "could not read the topics to their end"
            polled = consumer.poll(timeout_ms=1000)
            empty_polls = 0 if polled else empty_polls + 1
            for records in polled.values():
                messages = (Message(r.topic, r.key, r.value) for r in records)
                found.extend(m for m in messages if wanted(m))
        return found
    finally:
        consumer.close()


def event_ids_in(bootstrap: str, topic: str, ids: set[str]) -> list[str]:
    """The event ids of `ids` found in `topic`, with repeats (duplicates) kept."""
    messages = read_topics(bootstrap, [topic], lambda m: m.value.get("event_id") in ids)
    return [m.value["event_id"] for m in messages]


def readiness(base_url: str) -> dict[str, Any]:
    return dict(httpx.get(f"{base_url}/readyz", timeout=5).json())


def wait_until_drained(base_url: str, timeout: float = 30.0) -> dict[str, Any]:
    """Until the service is connected to a broker and its spool is empty."""
    deadline = time.monotonic() + timeout
    while True:
        report = readiness(base_url)
        if (
            report["broker"]["connected"]
            and report["spool"]["records"] == 0
            and not report["spool"]["segments"]
        ):
            return report
        assert time.monotonic() < deadline, f"the spool did not drain: {report}"
        time.sleep(0.1)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker this test may stop, kill and restart."""
    server = TansuBroker(log_path=tmp_path / "tansu.log").start()
    yield server
    server.stop()
