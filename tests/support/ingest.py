"""The metrics side: topics, a producer, the ingest process (a starter like the services'), the lake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.serializer import Serializer

from deploy.embedded import free_port
from services.metrics import lake
from tests.support.eventually import eventually

REPO = Path(__file__).resolve().parents[2]


def create_topics(bootstrap: str, partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, partitions, 1) for t in lake.TOPICS if t not in existing]
        if missing:
            admin.create_topics(missing)
    finally:
        admin.close()


class JsonValue(Serializer):
    """Records as JSON; raw bytes (deliberately malformed messages) as they are."""

    def serialize(self, topic: str, headers: list[tuple[str, bytes]], data: dict[str, Any] | bytes) -> bytes:
        return data if isinstance(data, bytes) else orjson.dumps(data)


class Utf8Key(Serializer):
    def serialize(self, topic: str, headers: list[tuple[str, bytes]], data: str) -> bytes:
        return data.encode()


def produce(bootstrap: str, topic: str, records: Sequence[dict[str, Any]], raw: Sequence[bytes] = ()) -> None:
    """The wire format (docs/api.md): key = unit_id, value = the JSON item; every send is confirmed."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, key_serializer=Utf8Key(), value_serializer=JsonValue(),
        linger_ms=5, allow_auto_create_topics=False,
    )  # fmt: skip
    try:
        futures = [producer.send(topic, key=r["unit_id"], value=r) for r in records]
        futures += [producer.send(topic, key="garbage", value=value) for value in raw]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=30)


@dataclass
class IngestProcess:
    """`python -m services.metrics ingest` as a child process we can SIGTERM or SIGKILL."""

    bootstrap: str
    data_dir: Path
    group: str
    extra: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    port: int = field(default_factory=free_port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> IngestProcess:
        env = {
            **os.environ, "ASSAY_ENV": "test", "ASSAY_KAFKA_BOOTSTRAP": self.bootstrap,
            "ASSAY_DATA_DIR": str(self.data_dir), "ASSAY_INGEST_GROUP": self.group,
            "ASSAY_METRICS_PORT": str(self.port), **self.extra,
        }  # fmt: skip
        self.log_path = self.log_path or self.data_dir / f"ingest-{self.group}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "services.metrics", "ingest"], env=env,
                                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        return self

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM: flush, commit, exit; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def lake_event_ids(lake_dir: Path, topic: str) -> list[str]:
    """Every event_id row in the topic's published files (duplicates included)."""
    ids: list[str] = []
    for path in sorted((lake_dir / topic).rglob("*.parquet")):
        if not path.name.startswith("."):
            ids.extend(pq.read_table(path, columns=["event_id"]).column("event_id").to_pylist())
    return ids


def wait_for_lake(lake_dir: Path, expected: dict[str, set[str]], ingest: IngestProcess, timeout: float = 90) -> None:
    def landed() -> bool:
        if all(ids <= set(lake_event_ids(lake_dir, topic)) for topic, ids in expected.items()):
            return True
        assert ingest.process is not None and ingest.process.poll() is None, ingest.log()[-3000:]
        return False

    def missing() -> str:
        counts = {t: len(ids - set(lake_event_ids(lake_dir, t))) for t, ids in expected.items()}
        return f"the lake still misses {counts} event ids:\n{ingest.log()[-3000:]}"

    eventually(landed, timeout, interval=0.25, message=missing)
