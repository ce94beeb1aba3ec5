"""End to end through the SDK: 50 000 exposures logged by `assay.Client` arrive in
`assay.exposures` exactly once, with the variant the unit was assigned."""

from __future__ import annotations

from collections import Counter

import assay
import httpx

from deploy.broker import TansuBroker
from deploy.processes import ServiceProcess
from tests.support.kafka import EXPOSURES, read_topics
from tests.support.services import SDK_KEY, create_running, metric_value, wait_until_drained

UNITS = 50_000


def test_fifty_thousand_exposures_arrive_exactly_once(
    admin: httpx.Client, assignment: ServiceProcess, exposure_service: ServiceProcess, broker: TansuBroker
) -> None:
    key = create_running(admin)["key"]
    client = assay.Client(SDK_KEY, assignment.base_url, exposure_service.base_url, mode="local",
                          batch_size=500, flush_interval=0.2, max_queue=UNITS)  # fmt: skip
    with client:
        assigned = {f"sdk-{i}": client.get_variant(key, f"sdk-{i}") for i in range(UNITS)}
        for unit in list(assigned)[:1000]:  # repeat views: deduplicated by the SDK
            client.get_variant(key, unit)
        assert client.flush(timeout=180)
        stats = client.stats
    assert stats["exposures_logged"] == UNITS and stats["exposures_deduplicated"] == 1000
    assert stats["sent"] == UNITS and stats["rejected"] == 0 and stats["dropped_queue_full"] == 0

    # A produce that times out on a busy machine is spooled and replayed: wait for that.
    wait_until_drained(exposure_service.base_url, timeout=120)
    metrics = httpx.get(f"{exposure_service.base_url}/metrics").text
    spooled = metric_value(metrics, "assay_exposure_items_spooled_total", kind="exposures")
    messages = read_topics(broker.bootstrap, [EXPOSURES], lambda m: m.value.get("experiment") == key)
    event_ids = Counter(m.value["event_id"] for m in messages)
    assert len(event_ids) == UNITS, f"{UNITS - len(event_ids)} confirmed exposures are missing"
    duplicates = sum(event_ids.values()) - len(event_ids)
    # Without a spool detour the path is exactly once; a timed-out produce that the broker
    # did store can come back on replay (removed downstream by event_id).
    assert duplicates == 0 or spooled > 0, (duplicates, spooled)
    assert sum(event_ids.values()) == len(messages)
    read_variants = {m.value["unit_id"]: m.value["variant"] for m in messages}
    assert all(assigned[unit] == variant for unit, variant in read_variants.items())
    assert all(m.key == m.value["unit_id"] and m.value["received_at"].endswith("Z") for m in messages)
