"""The spool across a crash, a torn write and a full disk budget: nothing that got a 202 is
lost. Each test has its own broker and service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from deploy.broker import TansuBroker
from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from services.exposure.spool_format import SpoolEntry, encode_record
from tests.conftest import SDK_KEY, client_for, metric_value
from tests.integration.exposure.conftest import (
    EXPOSURES,
    event_ids_in,
    exposure,
    readiness,
    wait_until_drained,
)
from tests.integration.exposure.test_broker_faults import report_duplicates


def post_batches(
    base_url: str, key: str, batches: int, size: int = 100
) -> tuple[list[str], list[httpx.Response]]:
    accepted: list[str] = []
    responses = []
    with client_for(base_url, SDK_KEY) as client:
        for b in range(batches):
            items = [exposure(key, f"spooled-{b}-{i}") for i in range(size)]
            response = client.post("/v1/exposures", json={"exposures": items})
            responses.append(response)
            if response.status_code == 202:
                assert response.json() == {"accepted": size, "rejected": []}
                accepted.extend(item["event_id"] for item in items)
    return accepted, responses


def test_sigkill_with_a_non_empty_spool_loses_nothing(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any], tmp_path: Path,
) -> None:  # fmt: skip
    spool_dir = tmp_path / "spool"
    service = start_exposure(redis_server.url, own_broker.bootstrap, spool_dir=spool_dir)
    own_broker.stop()
    accepted, responses = post_batches(service.base_url, experiment["key"], batches=10)
    assert [r.status_code for r in responses] == [202] * 10
    report = readiness(service.base_url)
    assert report["spool"]["records"] == 1000 and report["broker"]["connected"] is False
    assert report["spool"]["oldest_age_seconds"] >= 0 and report["ready"] is True

    service.kill()
    newest = sorted(spool_dir.glob("segment-*.log"))[-1]
    with newest.open("ab") as segment:  # as if the crash came in the middle of a write
        segment.write(encode_record(SpoolEntry(EXPOSURES, b"torn", b'{"event_id": "torn"}'))[:-5])
    own_broker.start()  # empty: the spool is the only copy
    service.start()
    wait_until_drained(service.base_url)

    delivered = event_ids_in(own_broker.bootstrap, EXPOSURES, set(accepted))
    assert set(accepted) - set(delivered) == set(), "spooled exposures were lost across the crash"
    report_duplicates("sigkill", delivered)
    metrics = httpx.get(f"{service.base_url}/metrics").text
    assert metric_value(metrics, "assay_exposure_items_replayed_total", kind="exposure") == 1000
    assert metric_value(metrics, "assay_exposure_spool_corrupt_records_total") == 1
    assert not list(spool_dir.glob("segment-*.log"))
    service.stop()


def test_full_spool_pushes_back_with_503_and_keeps_what_it_took(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any],
) -> None:  # fmt: skip
    service = start_exposure(redis_server.url, own_broker.bootstrap, ASSAY_SPOOL_MAX_BYTES="60000")
    own_broker.stop()
    accepted, responses = post_batches(service.base_url, experiment["key"], batches=8, size=50)
    statuses = [r.status_code for r in responses]
    assert statuses[0] == 202 and 503 in statuses, statuses
    assert statuses == sorted(statuses), "once full, the spool stays full while the broker is away"
    refused = responses[statuses.index(503)]
    assert refused.headers["retry-after"] == "5"
    assert "spool is full" in refused.json()["detail"]
    ready = httpx.get(f"{service.base_url}/readyz")
    assert ready.status_code == 503 and ready.json()["spool"]["full"] is True
    metrics = httpx.get(f"{service.base_url}/metrics").text
    assert metric_value(metrics, "assay_exposure_spool_full_total") == statuses.count(503)
    assert metric_value(metrics, "assay_exposure_items_accepted_total", kind="exposure") == len(accepted)

    own_broker.start()
    wait_until_drained(service.base_url)
    delivered = event_ids_in(own_broker.bootstrap, EXPOSURES, set(accepted))
    assert set(accepted) - set(delivered) == set(), "exposures that got a 202 were lost"
    more, responses = post_batches(service.base_url, experiment["key"], batches=2, size=50)
    assert [r.status_code for r in responses] == [202, 202]
    assert set(event_ids_in(own_broker.bootstrap, EXPOSURES, set(more))) == set(more)
    service.stop()
