"""The exposure spool across a SIGKILL (with a torn write) and a full spool budget: every
exposure answered 202 reaches the broker, nothing refused does. Each test has its own broker
and service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from deploy.broker import TansuBroker
from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from services.exposure.spool_format import SpoolEntry, encode_record, iter_records
from tests.faults.conftest import Tally
from tests.faults.test_broker_faults import all_exposure_ids
from tests.support.eventually import eventually
from tests.support.kafka import EXPOSURES
from tests.support.services import SDK_KEY, client_for, exposure, metric_value, readiness, wait_until_drained


def post_batches(
    base_url: str, key: str, batches: int, size: int = 100
) -> tuple[list[str], list[str], list[httpx.Response]]:
    """The ids answered 202, the ids refused, and every response."""
    accepted: list[str] = []
    refused: list[str] = []
    responses = []
    with client_for(base_url, SDK_KEY) as client:
        for b in range(batches):
            items = [exposure(key, f"spooled-{b}-{i}") for i in range(size)]
            response = client.post("/v1/exposures", json={"exposures": items})
            responses.append(response)
            ids = [item["event_id"] for item in items]
            if response.status_code == 202:
                assert response.json() == {"accepted": size, "rejected": []}
                accepted.extend(ids)
            else:
                refused.extend(ids)
    return accepted, refused, responses


def spooled_ids(spool_dir: Path) -> list[str]:
    """The event ids in the spool's segment files, read the way replay reads them."""
    ids = []
    for segment in sorted(spool_dir.glob("segment-*.log")):
        for item, _ in iter_records(segment.read_bytes()):
            assert isinstance(item, SpoolEntry), f"damage in {segment.name}: {item}"
            ids.append(orjson.loads(item.value)["event_id"])
    return ids


def test_sigkill_with_a_non_empty_spool_replays_everything(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any], tmp_path: Path,
) -> None:  # fmt: skip
    spool_dir = tmp_path / "spool"
    # Small segments: the spool spans many files, so the checkpoint moves across them.
    service = start_exposure(redis_server.url, own_broker.bootstrap, spool_dir=spool_dir,
                             ASSAY_SPOOL_SEGMENT_BYTES="32768")  # fmt: skip
    own_broker.stop()
    accepted, refused, responses = post_batches(service.base_url, experiment["key"], batches=20)
    assert [r.status_code for r in responses] == [202] * 20 and not refused
    report = readiness(service.base_url)
    assert report["spool"]["records"] == 2000 and report["broker"]["connected"] is False
    assert report["spool"]["oldest_age_seconds"] >= 0 and report["ready"] is True

    service.kill()
    on_disk = spooled_ids(spool_dir)
    Tally.of(accepted, on_disk).report("spool at SIGKILL").assert_exact()
    assert len(on_disk) == 2000 and len(list(spool_dir.glob("segment-*.log"))) > 1
    newest = sorted(spool_dir.glob("segment-*.log"))[-1]
    with newest.open("ab") as segment:  # as if the crash came in the middle of a write
        segment.write(encode_record(SpoolEntry(EXPOSURES, b"torn", b'{"event_id": "torn"}'))[:-5])
    own_broker.start()  # empty: the spool is the only copy
    service.start()
    wait_until_drained(service.base_url)

    tally = Tally.of(accepted, all_exposure_ids(own_broker.bootstrap)).report("sigkill with spool")
    tally.assert_exact()
    metrics = httpx.get(f"{service.base_url}/metrics").text
    assert metric_value(metrics, "assay_exposure_items_replayed_total", kind="exposure") == 2000
    assert metric_value(metrics, "assay_exposure_spool_corrupt_records_total") == 1
    assert not list(spool_dir.glob("segment-*.log"))
    service.stop()


def test_sigkill_in_the_middle_of_a_replay_replays_the_rest(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any], tmp_path: Path,
) -> None:  # fmt: skip
    spool_dir = tmp_path / "spool"
    # Small replay batches and segments: the replay takes hundreds of steps, so it can be
    # caught half-way, and its checkpoint sits inside a segment when the kill comes.
    service = start_exposure(redis_server.url, own_broker.bootstrap, spool_dir=spool_dir,
                             ASSAY_SPOOL_REPLAY_BATCH="10", ASSAY_SPOOL_SEGMENT_BYTES="65536",
                             ASSAY_KAFKA_PRODUCE_TIMEOUT_MS="800")  # fmt: skip
    own_broker.stop()
    accepted, refused, responses = post_batches(service.base_url, experiment["key"], batches=30)
    assert [r.status_code for r in responses] == [202] * 30 and not refused
    assert readiness(service.base_url)["spool"]["records"] == 3000

    own_broker.start()
    eventually(lambda: readiness(service.base_url)["spool"]["records"] != 3000,  # the replay is under way
               timeout=30, interval=0.01, message="the replay did not start")  # fmt: skip
    own_broker.freeze()  # the replay stalls half-way: what the spool holds now stays there
    try:
        left = readiness(service.base_url)["spool"]["records"]
        assert 0 < left < 3000, left
        service.kill()
    finally:
        own_broker.thaw()
    # What the old broker holds survives (it is only frozen); the rest must come from the spool.
    service.start()
    wait_until_drained(service.base_url)

    delivered = all_exposure_ids(own_broker.bootstrap)
    tally = Tally.of(accepted, delivered).report(f"sigkill mid-replay ({left} left in the spool)")
    tally.assert_exact()
    assert not list(spool_dir.glob("segment-*.log"))
    service.stop()


def test_full_spool_pushes_back_with_503_and_keeps_what_it_took(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any],
) -> None:  # fmt: skip
    service = start_exposure(redis_server.url, own_broker.bootstrap, ASSAY_SPOOL_MAX_BYTES="60000")
    own_broker.stop()
    accepted, refused, responses = post_batches(service.base_url, experiment["key"], batches=8, size=50)
    statuses = [r.status_code for r in responses]
    assert statuses[0] == 202 and 503 in statuses, statuses
    assert statuses == sorted(statuses), "once full, the spool stays full while the broker is away"
    assert (len(accepted), len(refused)) == (50 * statuses.count(202), 50 * statuses.count(503))
    for answer in responses[statuses.index(503) :]:
        assert answer.headers["retry-after"] == "5"
        assert "spool is full" in answer.json()["detail"]
    ready = httpx.get(f"{service.base_url}/readyz")
    assert ready.status_code == 503 and ready.json()["spool"]["full"] is True
    assert ready.json()["spool"]["records"] == len(accepted)
    metrics = httpx.get(f"{service.base_url}/metrics").text
    assert metric_value(metrics, "assay_exposure_spool_full_total") == statuses.count(503)
    assert metric_value(metrics, "assay_exposure_items_accepted_total", kind="exposure") == len(accepted)

    own_broker.start()
    wait_until_drained(service.base_url)
    # Exact: every 202 arrives once after dedup; nothing of a refused request arrives (foreign = 0).
    Tally.of(accepted, all_exposure_ids(own_broker.bootstrap)).report("full spool").assert_exact()
    more, refused_later, responses = post_batches(service.base_url, experiment["key"], batches=2, size=50)
    assert [r.status_code for r in responses] == [202, 202] and not refused_later
    Tally.of(accepted + more, all_exposure_ids(own_broker.bootstrap)).report("after the spool drained").assert_exact()
    service.stop()
