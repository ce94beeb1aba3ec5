"""Ingest killed with SIGKILL in the middle of its work, then restarted: nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from deploy.broker import TansuBroker
from services.metrics import lake
from tests.generator import generate
from tests.integration.metrics.kafka_tools import (
    IngestProcess,
    create_topics,
    lake_event_ids,
    produce,
    wait_for_lake,
)

SMALL_BATCHES = {"ASSAY_INGEST_BATCH_MAX_RECORDS": "200", "ASSAY_INGEST_BATCH_MAX_SECONDS": "0.2"}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker of its own: the topics hold exactly what this test produced."""
    server = TansuBroker(log_path=tmp_path / "broker.log").start()
    yield server
    server.stop()


def wait_for_files(lake_dir: Path, minimum: int, ingest: IngestProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(list((lake_dir / lake.EVENTS_TOPIC).rglob("part-*.parquet"))) < minimum:
        assert time.monotonic() < deadline, ingest.log()[-3000:]
        time.sleep(0.02)


def test_sigkill_mid_batch_then_restart_loses_nothing(own_broker: TansuBroker, tmp_path: Path) -> None:
    data = generate(seed=5, units=900)
    create_topics(own_broker.bootstrap)
    produce(own_broker.bootstrap, lake.EXPOSURES_TOPIC, data.exposures)
    produce(own_broker.bootstrap, lake.EVENTS_TOPIC, data.events)
    lake_dir = tmp_path / "lake"
    produced = {lake.EXPOSURES_TOPIC: data.exposures, lake.EVENTS_TOPIC: data.events}
    expected = {topic: {r["event_id"] for r in records} for topic, records in produced.items()}

    first = IngestProcess(own_broker.bootstrap, tmp_path, "crash-test", SMALL_BATCHES).start()
    wait_for_files(lake_dir, 5, first)
    first.kill()
    ids_at_kill = set(lake_event_ids(lake_dir, lake.EVENTS_TOPIC))
    assert 0 < len(ids_at_kill) < len(expected[lake.EVENTS_TOPIC])  # it really died half-way
    for path in (lake_dir / lake.EVENTS_TOPIC).rglob("part-*.parquet"):
        pq.read_metadata(path)  # every published file is complete; only '.'-temporaries can be partial

    second = IngestProcess(own_broker.bootstrap, tmp_path, "crash-test", SMALL_BATCHES).start()
    try:
        wait_for_lake(lake_dir, expected, second)
    finally:
        assert second.stop() == 0
    for topic, ids in expected.items():
        rows = lake_event_ids(lake_dir, topic)
        assert set(rows) == ids  # every event, nothing foreign; duplicates only from re-reading
        assert len(rows) >= len(
            [r for r in (data.exposures if topic == lake.EXPOSURES_TOPIC else data.events)]
        )
    assert not list(lake_dir.rglob(".part-*.tmp"))  # the restart removed the crash's leftovers
