"""Metrics ingest SIGKILLed with a batch read but not yet written, then restarted: the lake
holds every produced message, and after de-duplication by event_id every event exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from deploy.broker import TansuBroker
from services.common.durable import temp_path_for
from services.metrics import lake
from tests.faults.conftest import Tally
from tests.generator import generate
from tests.support.eventually import eventually
from tests.support.ingest import IngestProcess, create_topics, lake_event_ids, produce, wait_for_lake

BATCH = 2000
# Only full batches are flushed (the time limit is never reached): whatever is left over
# after the last full batch stays read, unwritten and uncommitted until the process dies.
FULL_BATCHES_ONLY = {"ASSAY_INGEST_BATCH_MAX_RECORDS": str(BATCH), "ASSAY_INGEST_BATCH_MAX_SECONDS": "3600"}
SMALL_BATCHES = {"ASSAY_INGEST_BATCH_MAX_RECORDS": "200", "ASSAY_INGEST_BATCH_MAX_SECONDS": "0.2"}


def health(ingest: IngestProcess) -> dict[str, Any]:
    return dict(httpx.get(f"{ingest.base_url}/healthz", timeout=5).json())


def wait_until_all_read(ingest: IngestProcess, messages: int, timeout: float = 90) -> dict[str, Any]:
    """Until every message is either written (and committed) or in the open batch, and that
    batch is a partial one (it will not be flushed by size)."""
    last: dict[str, Any] | None = None

    def all_read() -> dict[str, Any] | None:
        nonlocal last
        assert ingest.process is not None and ingest.process.poll() is None, ingest.log()[-3000:]
        try:
            last = health(ingest)
        except httpx.HTTPError:
            last = None
            return None
        counters = last["counters"]
        written = counters["exposures"] + counters["events"] + counters["quarantined"]
        if written + last["pending_messages"] == messages and 0 < last["pending_messages"] < BATCH:
            return last
        return None

    return eventually(all_read, timeout, interval=0.1,
                      message=lambda: f"ingest did not read everything: {last}\n{ingest.log()[-3000:]}")  # fmt: skip


def test_sigkill_mid_batch_then_restart_completes_the_lake(own_broker: TansuBroker, tmp_path: Path) -> None:
    data = generate(seed=5, units=300)
    produced = {lake.EXPOSURES_TOPIC: data.exposures, lake.EVENTS_TOPIC: data.events}
    messages = {topic: Counter(r["event_id"] for r in records) for topic, records in produced.items()}
    total = sum(len(records) for records in produced.values())
    assert total % BATCH, "the last batch must be a partial one"
    create_topics(own_broker.bootstrap)
    for topic, records in produced.items():
        produce(own_broker.bootstrap, topic, records)
    lake_dir = tmp_path / "lake"

    first = IngestProcess(own_broker.bootstrap, tmp_path, "crash-test", FULL_BATCHES_ONLY).start()
    state = wait_until_all_read(first, total)
    first.kill()  # SIGKILL with `pending` messages read and not yet written
    pending, counters = state["pending_messages"], state["counters"]
    assert counters["commit_failures"] == 0 and counters["quarantined"] == 0
    rows_at_kill = {topic: lake_event_ids(lake_dir, topic) for topic in produced}
    assert sum(len(rows) for rows in rows_at_kill.values()) == total - pending  # exactly what was flushed
    assert not list(lake_dir.rglob(".part-*.tmp"))
    published = sorted(lake_dir.rglob("part-*.parquet"))
    for path in published:
        pq.read_metadata(path)  # every published file is complete
    # As if the kill had come in the middle of a write: a torn temporary beside the files.
    torn = temp_path_for(published[0].with_name(lake.new_file_name()))
    torn.write_bytes(published[0].read_bytes()[:100])

    second = IngestProcess(own_broker.bootstrap, tmp_path, "crash-test", SMALL_BATCHES).start()
    try:
        wait_for_lake(lake_dir, {topic: set(ids) for topic, ids in messages.items()}, second)
    finally:
        assert second.stop() == 0
    print(f"\ningest sigkill: {total} messages produced, {total - pending} in the lake at the kill, "
          f"{pending} read but unwritten")  # fmt: skip
    for topic, sent in messages.items():
        rows = lake_event_ids(lake_dir, topic)
        print(f"{topic}: {sum(sent.values())} messages produced ({len(sent)} event ids), {len(rows)} lake rows")
        Tally.of(sent, rows).report(f"lake {topic}").assert_exact()
        # Raw rows, message for message: the generator's own re-sent messages are there, and the
        # restart re-read only the uncommitted batch, so no replay duplicate was added.
        assert Counter(rows) == sent, f"{topic}: {len(rows)} rows for {sum(sent.values())} messages"
    assert not torn.exists() and not list(lake_dir.rglob(".part-*.tmp"))  # the restart removed it
