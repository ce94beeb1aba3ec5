"""The exposure service with several worker processes (`ASSAY_WORKERS`): one port, one
producer and one spool slot per worker, metrics added up over the workers. Every exposure
answered 202 reaches the broker, through a broker outage, a SIGKILL of the whole service
and the death of one worker. Each test has its own broker and service."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from deploy.broker import TansuBroker
from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.faults.conftest import Tally
from tests.faults.test_broker_faults import all_exposure_ids
from tests.faults.test_spool_recovery import spooled_ids
from tests.support.eventually import eventually
from tests.support.services import SDK_KEY, client_for, create_running, exposure, metric_value

WORKERS = "2"


@contextlib.contextmanager
def one_client_per_worker(base_url: str, workers: int = 2) -> Iterator[dict[int, httpx.Client]]:
    """Keep-alive connections until every worker holds one; {worker pid: client}. A worker
    answers `/readyz` for itself, so the connection's first answer names its worker."""
    clients: dict[int, httpx.Client] = {}
    spare: list[httpx.Client] = []
    try:
        for _ in range(200):
            client = client_for(base_url, SDK_KEY)
            pid = int(client.get("/readyz").json()["worker"]["pid"])
            if pid in clients:
                spare.append(client)
            else:
                clients[pid] = client
            if len(clients) == workers:
                break
        assert len(clients) == workers, f"only workers {sorted(clients)} took connections"
        yield clients
    finally:
        for client in [*clients.values(), *spare]:
            client.close()


def every_worker_up(base_url: str) -> bool:
    try:
        with one_client_per_worker(base_url):
            return True
    except AssertionError:  # one of them is still starting
        return False


def wait_for_every_worker(service: ServiceProcess) -> None:
    """The service answers once one worker is ready; on a busy machine the other may still be
    starting, and every connection would go to the first."""
    eventually(lambda: every_worker_up(service.base_url), 60, interval=0.5, message="a worker never took connections")


def post_through(clients: dict[int, httpx.Client], key: str, batches: int, size: int = 100) -> list[str]:
    """`batches` batches spread over the workers' connections, concurrently; the ids answered 202."""

    def post(job: tuple[httpx.Client, int]) -> list[str]:
        client, number = job
        items = [exposure(key, f"worker-unit-{number}-{i}") for i in range(size)]
        response = client.post("/v1/exposures", json={"exposures": items})
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": size, "rejected": []}
        return [str(item["event_id"]) for item in items]

    # One thread per connection: an httpx client is not shared between threads.
    owners = list(clients.values())
    jobs = [[(client, n) for n in range(batches) if n % len(owners) == k] for k, client in enumerate(owners)]
    with ThreadPoolExecutor(len(owners)) as pool:
        return [i for ids in pool.map(lambda share: [i for job in share for i in post(job)], jobs) for i in ids]


def scrape(base_url: str, sample: str, **labels: str) -> float:
    """One sample from a scrape on a fresh connection (so any worker may answer it)."""
    with httpx.Client(base_url=base_url, timeout=10) as fresh:
        return metric_value(fresh.get("/metrics").text, sample, **labels)


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (the service and its workers: `ServiceProcess`
    starts each service in a session of its own)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def wait_until_every_slot_drained(base_url: str, timeout: float = 60.0) -> None:
    def drained() -> bool:
        return (scrape(base_url, "assay_exposure_spool_records") == 0
                and scrape(base_url, "assay_exposure_broker_connected") == 1)  # fmt: skip

    eventually(drained, timeout, interval=0.2, message="the workers' spools did not drain")


def test_two_workers_share_the_port_count_together_and_lose_nothing(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any], admin: httpx.Client,
) -> None:  # fmt: skip
    service = start_exposure(redis_server.url, own_broker.bootstrap, ASSAY_WORKERS=WORKERS)
    wait_for_every_worker(service)
    with one_client_per_worker(service.base_url) as clients:
        accepted = post_through(clients, experiment["key"], batches=30)
        # Each worker keeps its own registry cache up to date: an experiment started now is
        # known to both.
        later = create_running(admin)
        accepted += post_through(clients, later["key"], batches=2)
    assert len(accepted) == 3200
    # A produce that timed out on a busy machine was spooled, and reaches the broker on replay.
    wait_until_every_slot_drained(service.base_url)
    Tally.of(accepted, all_exposure_ids(own_broker.bootstrap)).report("two workers").assert_exact()
    # Whichever worker takes the scrape, it reports both workers' counts.
    for _ in range(6):
        assert scrape(service.base_url, "assay_exposure_items_accepted_total", kind="exposure") == 3200
        assert scrape(service.base_url, "assay_http_requests_total", method="POST", route="/v1/exposures",
                      status="202") == 32  # fmt: skip
    assert service.process is not None
    group = service.process.pid
    assert len(group_members(group)) >= 3  # the supervisor and two workers
    service.stop()  # SIGTERM to the supervisor: every worker shuts down gracefully
    assert service.process.returncode == 0
    eventually(lambda: not group_members(group), 10, message="worker processes outlived the service")


def test_each_worker_spools_to_its_own_slot_and_a_restart_replays_both(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any], tmp_path: Path,
) -> None:  # fmt: skip
    spool_dir = tmp_path / "spool"
    service = start_exposure(redis_server.url, own_broker.bootstrap, spool_dir=spool_dir, ASSAY_WORKERS=WORKERS)
    # Both workers up before the broker goes: the service is ready once one of them is, and a
    # worker still starting when Kafka vanishes waits out the bootstrap timeout (30 s) before
    # it takes connections.
    wait_for_every_worker(service)
    own_broker.stop()
    with one_client_per_worker(service.base_url) as clients:
        accepted = post_through(clients, experiment["key"], batches=20)
    eventually(lambda: scrape(service.base_url, "assay_exposure_spool_records") == 2000, 10, interval=0.2,
               message="the spool gauges do not add up the workers' slots")  # fmt: skip
    assert scrape(service.base_url, "assay_exposure_broker_connected") == 0

    service.kill()  # the supervisor and both workers
    slots = [spooled_ids(spool_dir), spooled_ids(spool_dir / "replica-1")]
    assert all(slots), f"a worker spooled nothing: {[len(s) for s in slots]}"
    Tally.of(accepted, slots[0] + slots[1]).report("two slots at SIGKILL").assert_exact()

    own_broker.start()  # empty: the two slots are the only copy
    service.start()
    wait_until_every_slot_drained(service.base_url)
    Tally.of(accepted, all_exposure_ids(own_broker.bootstrap)).report("two slots replayed").assert_exact()
    assert scrape(service.base_url, "assay_exposure_items_replayed_total", kind="exposure") == 2000
    assert not list(spool_dir.glob("**/segment-*.log"))
    service.stop()


def test_a_dead_worker_is_replaced_and_nothing_accepted_is_lost(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any],
) -> None:  # fmt: skip
    service = start_exposure(redis_server.url, own_broker.bootstrap, ASSAY_WORKERS=WORKERS)
    wait_for_every_worker(service)
    with one_client_per_worker(service.base_url) as clients:
        accepted = post_through(clients, experiment["key"], batches=10)
        victim = min(clients)
    os.kill(victim, signal.SIGKILL)  # one worker of the service this test started

    def replaced() -> set[int] | None:
        try:
            with one_client_per_worker(service.base_url) as fresh:
                pids = set(fresh)
        except AssertionError:  # only the survivor takes connections yet
            return None
        except httpx.TransportError:  # a probe queued on the dead worker's socket was reset
            return None
        return pids if victim not in pids else None

    survivors = eventually(replaced, 60, interval=0.5, message="the dead worker was not replaced")
    assert len(survivors) == 2
    with one_client_per_worker(service.base_url) as clients:
        accepted += post_through(clients, experiment["key"], batches=10)
    wait_until_every_slot_drained(service.base_url)
    Tally.of(accepted, all_exposure_ids(own_broker.bootstrap)).report("a worker replaced").assert_exact()
    # The dead worker's counts stay in the totals; its gauges no longer count.
    assert scrape(service.base_url, "assay_exposure_items_accepted_total", kind="exposure") == 2000
    assert scrape(service.base_url, "assay_exposure_broker_connected") == 1
    service.stop()


def test_workers_stop_with_a_killed_supervisor_and_a_restart_gets_their_slots(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any], tmp_path: Path,
) -> None:  # fmt: skip
    """SIGKILL to the supervisor alone: its workers must not live on as orphans (they would
    keep serving and hold their spool slots against the next start)."""
    spool_dir = tmp_path / "spool"
    service = start_exposure(redis_server.url, own_broker.bootstrap, spool_dir=spool_dir, ASSAY_WORKERS=WORKERS)
    wait_for_every_worker(service)
    with one_client_per_worker(service.base_url) as clients:
        accepted = post_through(clients, experiment["key"], batches=4)
    assert service.process is not None
    group = service.process.pid
    os.kill(group, signal.SIGKILL)  # the supervisor only, not its group
    service.process.wait(timeout=10)
    eventually(lambda: not group_members(group), 20, message="workers outlived their supervisor")
    service.start()  # same spool directory, ASSAY_SPOOL_SLOTS unset: both slots must be free again
    wait_for_every_worker(service)
    with one_client_per_worker(service.base_url) as clients:
        accepted += post_through(clients, experiment["key"], batches=4)
    wait_until_every_slot_drained(service.base_url)
    Tally.of(accepted, all_exposure_ids(own_broker.bootstrap)).report("supervisor killed").assert_exact()
    service.stop()
