"""The broker hangs, or is killed and comes back empty, in the middle of a stream of posts:
every exposure answered 202 reaches the topic, and after de-duplication by event_id exactly
one copy of each is left. Each test has its own broker and exposure service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from deploy.broker import TansuBroker
from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.faults.conftest import Poster, Tally
from tests.support.eventually import eventually
from tests.support.kafka import EXPOSURES, read_topics
from tests.support.services import metric_value, readiness, wait_until_drained

STREAM = 20_000


def all_exposure_ids(bootstrap: str) -> list[str]:
    """Every exposure on the broker, with repeats: a broker of the test's own holds nothing else."""
    return [m.value["event_id"] for m in read_topics(bootstrap, [EXPOSURES], lambda _: True)]


def spooled_and_replayed(base_url: str) -> tuple[float, float]:
    metrics = httpx.get(f"{base_url}/metrics").text
    return (metric_value(metrics, "assay_exposure_items_spooled_total", kind="exposure"),
            metric_value(metrics, "assay_exposure_items_replayed_total", kind="exposure"))  # fmt: skip


def finish_stream(stream: Poster, timeout: float = 180) -> list[str]:
    """Until every item of the finite stream was posted; the accepted ids."""
    stream.join(timeout)
    assert not stream.is_alive(), f"the stream stalled after {stream.sent} items: {stream.statuses}"
    return stream.finish()


def test_broker_hangs_mid_stream_then_recovers(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any],
) -> None:  # fmt: skip
    total, batch = 3_000, 50
    service = start_exposure(redis_server.url, own_broker.bootstrap, ASSAY_KAFKA_PRODUCE_TIMEOUT_MS="800")
    stream = Poster(service.base_url, experiment["key"], batch=batch, total=total)
    stream.start()
    try:
        stream.wait_for(300)
        own_broker.freeze()  # requests in flight now get no ack: they time out into the spool
        answered_before = stream.statuses[202]
        eventually(lambda: readiness(service.base_url)["spool"]["records"] > 0
                   and stream.statuses[202] >= answered_before + 5,
                   timeout=15, message="nothing was spooled while the broker hung")  # fmt: skip
    finally:
        own_broker.thaw()
    accepted = finish_stream(stream)
    wait_until_drained(service.base_url)

    assert stream.statuses == {202: total // batch} and len(accepted) == total
    tally = Tally.of(accepted, all_exposure_ids(own_broker.bootstrap)).report("broker hang")
    tally.assert_exact()
    spooled, replayed = spooled_and_replayed(service.base_url)
    assert spooled > 0 and replayed == spooled, (spooled, replayed)
    service.stop()


def test_broker_killed_and_restarted_empty_mid_stream(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any],
) -> None:  # fmt: skip
    batch = 100
    service = start_exposure(redis_server.url, own_broker.bootstrap, ASSAY_KAFKA_PRODUCE_TIMEOUT_MS="800")
    stream = Poster(service.base_url, experiment["key"], batch=batch, total=STREAM)
    stream.start()
    stream.wait_for(5_000)
    with stream.paused():
        # Memory storage: what the old broker acked dies with it, so read it first (nothing is
        # in flight while paused, so this snapshot is exact).
        before = set(stream.accepted)
        on_old_broker = all_exposure_ids(own_broker.bootstrap)
        Tally.of(before, on_old_broker).assert_exact()
        own_broker.kill()
    stream.wait_for(len(before) + 3_000)  # spooled while no broker runs
    assert readiness(service.base_url)["broker"]["connected"] is False
    own_broker.start()  # a new, empty broker on the same port: no topics, no producer ids
    accepted = finish_stream(stream)
    wait_until_drained(service.base_url)

    assert stream.statuses == {202: STREAM // batch}
    assert len(accepted) == len(set(accepted)) == STREAM
    on_new_broker = all_exposure_ids(own_broker.bootstrap)
    tally = Tally.of(accepted, on_old_broker + on_new_broker).report("broker killed and restarted")
    tally.assert_exact()
    # Everything accepted after the kill is on the new broker; it was spooled, then replayed.
    assert set(accepted) - before <= set(on_new_broker)
    spooled, replayed = spooled_and_replayed(service.base_url)
    assert spooled >= 3_000 and replayed == spooled, (spooled, replayed)
    service.stop()
