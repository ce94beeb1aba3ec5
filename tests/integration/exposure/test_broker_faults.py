"""The broker hangs, or dies and comes back empty, in the middle of a stream of posts:
every accepted event id still reaches the topic. Each test has its own broker and service."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from deploy.broker import TansuBroker
from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.conftest import metric_value
from tests.integration.exposure.conftest import EXPOSURES, Poster, event_ids_in, readiness, wait_until_drained


def report_duplicates(name: str, delivered: list[str]) -> int:
    duplicates = sum(count - 1 for count in Counter(delivered).values())
    print(f"\n{name}: {len(set(delivered))} distinct ids delivered, {duplicates} duplicates")
    return duplicates


def test_broker_hangs_mid_stream_then_recovers(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any],
) -> None:  # fmt: skip
    service = start_exposure(redis_server.url, own_broker.bootstrap, ASSAY_KAFKA_PRODUCE_TIMEOUT_MS="800")
    poster = Poster(service.base_url, experiment["key"])
    poster.start()
    try:
        poster.wait_for(300)
        own_broker.freeze()  # requests in flight now get no ack: they time out into the spool
        spooled_before = poster.statuses[202]
        deadline = time.monotonic() + 15
        while (
            readiness(service.base_url)["spool"]["records"] == 0 or poster.statuses[202] < spooled_before + 5
        ):
            assert time.monotonic() < deadline, "nothing was spooled while the broker hung"
            time.sleep(0.05)
    finally:
        own_broker.thaw()
    poster.wait_for(len(poster.accepted) + 300)
    accepted = poster.finish()
    wait_until_drained(service.base_url)

    delivered = event_ids_in(own_broker.bootstrap, EXPOSURES, set(accepted))
    assert set(accepted) - set(delivered) == set(), "accepted exposures were lost"
    assert set(poster.statuses) == {202}, poster.statuses
    report_duplicates("broker hang", delivered)
    metrics = httpx.get(f"{service.base_url}/metrics").text
    assert metric_value(metrics, "assay_exposure_items_spooled_total", kind="exposure") > 0
    assert metric_value(metrics, "assay_exposure_items_replayed_total", kind="exposure") > 0
    service.stop()


def test_broker_restarted_empty_mid_stream(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any],
) -> None:  # fmt: skip
    service = start_exposure(redis_server.url, own_broker.bootstrap, ASSAY_KAFKA_PRODUCE_TIMEOUT_MS="800")
    poster = Poster(service.base_url, experiment["key"])
    poster.start()
    poster.wait_for(300)
    with poster.paused():
        # Memory storage: what the old broker acked dies with it, so read it first (nothing is
        # in flight while paused, so this snapshot is exact).
        before = set(poster.accepted)
        on_old_broker = event_ids_in(own_broker.bootstrap, EXPOSURES, before)
        assert set(on_old_broker) == before
        own_broker.stop()
    poster.wait_for(len(poster.accepted) + 200)  # spooled while no broker runs
    assert readiness(service.base_url)["broker"]["connected"] is False
    own_broker.start()  # a new, empty broker on the same port: no topics, no producer ids
    poster.wait_for(len(poster.accepted) + 300)
    accepted = poster.finish()
    wait_until_drained(service.base_url)

    on_new_broker = event_ids_in(own_broker.bootstrap, EXPOSURES, set(accepted) - before)
    lost = set(accepted) - before - set(on_new_broker)
    assert not lost, f"{len(lost)} accepted exposures were lost"
    assert set(poster.statuses) == {202}, poster.statuses
    report_duplicates("broker restart", on_old_broker + on_new_broker)
    service.stop()
