"""Scale-out: exposures through two exposure replicas, two ingest consumers sharing the
topic's partitions, one of them restarted mid-stream; the lake must hold each exposure once."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from assay.timefmt import utc_now_rfc3339

from deploy.compose_test.compose import Compose
from deploy.compose_test.flow import EXPERIMENT, VARIANTS, Stack, lake_counts

PREFIX = "scale-unit-"
BATCH = 1000


def exposure_batch(start: int) -> list[dict[str, str]]:
    now = utc_now_rfc3339()
    return [{"event_id": str(uuid.uuid4()), "experiment": EXPERIMENT, "variant": VARIANTS[i % 2],
             "unit_id": f"{PREFIX}{i}", "timestamp": now} for i in range(start, start + BATCH)]  # fmt: skip


def send_batch(client: httpx.Client, start: int) -> int:
    for _attempt in range(5):
        answer = client.post("/v1/exposures", json={"exposures": exposure_batch(start)})
        if answer.status_code in (200, 202):
            accepted = int(answer.json()["accepted"])
            assert accepted == BATCH, answer.text
            return accepted
        time.sleep(1)
    raise AssertionError(f"exposure batch {start} refused: {answer.status_code} {answer.text[:300]}")


def send_through_replicas(stack: Stack, total: int, midway: Callable[[], None]) -> dict[str, int]:
    """`total` exposures, batches alternating between the replicas; `midway` runs at half."""
    clients = [httpx.Client(base_url=url, headers=stack.headers("sdk"), timeout=60) for url in stack.exposure]
    per_replica = dict.fromkeys(stack.exposure, 0)
    try:
        starts = list(range(0, total, BATCH))
        halves = (starts[: len(starts) // 2], starts[len(starts) // 2 :])
        with ThreadPoolExecutor(max_workers=len(clients) * 2) as pool:
            for number, half in enumerate(halves):
                futures = [(stack.exposure[i % len(clients)], pool.submit(send_batch, clients[i % len(clients)], s))
                           for i, s in enumerate(half)]  # fmt: skip
                if number == 0:
                    time.sleep(0.5)  # the stream is flowing into Kafka and out to the lake
                    midway()
                for url, future in futures:
                    per_replica[url] += future.result()
    finally:
        for client in clients:
            client.close()
    assert all(per_replica.values()), f"a replica took nothing: {per_replica}"
    return per_replica


def ingest_snapshots(compose: Compose) -> list[dict[str, object]]:
    snapshots = []
    for index in range(1, len(compose.container_ids("metrics-ingest")) + 1):
        raw = compose.exec("metrics-ingest", "curl", "-fsS", "http://127.0.0.1:8004/healthz", index=index)
        state = json.loads(raw)
        snapshots.append({"replica": index, **state.get("counters", {})})
    return snapshots


def wait_exactly_once(compose: Compose, total: int, timeout: float = 300, settle: float = 10) -> list[int]:
    """Until the lake holds `total` distinct scale-out exposures, then, after `settle` seconds
    more, exactly `total` rows: every one landed, none twice."""
    deadline, counts = time.monotonic() + timeout, [0, 0]
    while time.monotonic() < deadline:
        counts = lake_counts(compose, PREFIX)["assay.exposures"]
        if counts[1] >= total:
            time.sleep(settle)
            counts = lake_counts(compose, PREFIX)["assay.exposures"]
            assert counts == [total, total], f"rows, distinct ids = {counts}; expected {total} each"
            return counts
        time.sleep(3)
    raise TimeoutError(f"the lake holds {counts} (rows, distinct) of {total} scale-out exposures")


def accepted_per_worker_sum(compose: Compose) -> list[int]:
    """Per exposure replica, the exposures its `/metrics` counts as accepted: the sum over the
    replica's worker processes, whichever worker answers the scrape."""
    totals = []
    for index in range(1, len(compose.container_ids("exposure")) + 1):
        text = compose.exec("exposure", "curl", "-fsS", "http://127.0.0.1:8002/metrics", index=index)
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith('assay_exposure_items_accepted_total{kind="exposure"}')]  # fmt: skip
        totals.append(int(sum(values)))
    return totals


def spool_slots(compose: Compose) -> list[str]:
    """The spool slot directories the exposure processes have claimed on the shared volume."""
    listing = compose.exec("exposure", "ls", "-1", "/data/spool/exposure")
    return sorted(name for name in listing.split() if name.startswith("replica-"))
