"""Redis SIGKILLed while the assignment service is under load, then restarted from its AOF:
every answer is a 200 (degraded while Redis is away), no unit ever sees two variants, and
stickiness resumes: afterwards every enrolled unit is stored in Redis and answered `sticky`."""

from __future__ import annotations

import itertools
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from assay.sticky import sticky_key

from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.support.eventually import eventually
from tests.support.services import ADMIN_KEY, SDK_KEY, client_for, create_running


@dataclass(frozen=True)
class Answer:
    asked: int  # when the request was sent, on the same counter as `seq`
    seq: int  # order in which answers arrived, over every load thread
    unit: str
    variant: str | None
    reason: str
    degraded: bool


class AssignLoad(threading.Thread):
    """Back-to-back requests until stopped: each asks about `fresh` never-seen units and
    `revisit` units seen before (batch endpoint), or one unit (single endpoint)."""

    def __init__(self, name: str, base_url: str, experiment: str, sequence: Iterator[int], batch: bool) -> None:
        super().__init__(name=name, daemon=True)
        self.client = client_for(base_url, SDK_KEY)
        self.experiment = experiment
        self.sequence = sequence
        self.batch = batch
        self.answers: list[Answer] = []
        self.statuses: Counter[int] = Counter()
        self.stop_requested = threading.Event()

    def units(self, round_: int) -> list[str]:
        fresh = [f"{self.name}-{round_}-{i}" for i in range(10 if self.batch else 1)]
        seen = sorted({a.unit for a in self.answers[-200:]})
        return fresh + seen[: len(fresh)]

    def ask(self, units: list[str]) -> list[dict[str, Any]]:
        if self.batch:
            body = {"units": [{"unit_id": u} for u in units], "experiments": [self.experiment]}
            response = self.client.post("/v1/assign/batch", json=body)
        else:
            response = self.client.post("/v1/assign", json={"unit_id": units[0], "experiments": [self.experiment]})
        self.statuses[response.status_code] += 1
        assert response.status_code == 200, response.text
        return list(response.json()["results"]) if self.batch else [response.json()]

    def run(self) -> None:
        try:
            for round_ in itertools.count():
                if self.stop_requested.is_set():
                    return
                units, asked = self.units(round_), next(self.sequence)
                for result in self.ask(units if self.batch else units[:1]):
                    got = result["assignments"][self.experiment]
                    self.answers.append(Answer(asked, next(self.sequence), result["unit_id"], got["variant"],
                                               got["reason"], result["degraded"]))  # fmt: skip
        finally:
            self.client.close()


def wait_for(answers: Callable[[], int], count: int, threads: list[AssignLoad], what: str) -> None:
    def reached() -> bool:
        if answers() >= count:
            return True
        assert all(t.is_alive() for t in threads), f"a load thread died while waiting for {what}"
        return False

    eventually(reached, timeout=60, interval=0.02, message=lambda: f"{what}: {answers()} of {count}")


def test_redis_killed_under_load_degrades_then_stays_sticky(
    own_redis: RedisServer, start_assignment: Callable[..., ServiceProcess]
) -> None:
    # A dead Redis refuses connections at once; the timeout only guards against a slow one.
    service = start_assignment(own_redis.url, ASSAY_REDIS_TIMEOUT_MS="1000", ASSAY_REDIS_RETRY_SECONDS="0.2")
    with client_for(service.base_url, ADMIN_KEY) as admin:
        key = create_running(admin, traffic=0.5)["key"]
    sequence = itertools.count()
    load = [AssignLoad("batch", service.base_url, key, sequence, batch=True),
            AssignLoad("single", service.base_url, key, sequence, batch=False)]  # fmt: skip

    def answers() -> list[Answer]:
        return [a for thread in load for a in list(thread.answers)]

    for thread in load:
        thread.start()
    try:
        wait_for(lambda: len(answers()), 500, load, "answers before the kill")
        own_redis.kill()
        killed_at = next(sequence)
        wait_for(lambda: sum(a.degraded for a in answers()), 300, load, "degraded answers")
        restarted_at = next(sequence)
        own_redis.start()  # same port and data directory: the AOF brings the stored assignments back
        # Answered by Redis itself: a "sticky" answer may come from the process's own cache of
        # stored assignments while the service still keeps away from Redis for its retry pause.
        wait_for(lambda: sum(a.seq > restarted_at and not a.degraded and a.reason != "sticky" for a in answers()),
                 500, load, "answers from Redis after it came back")  # fmt: skip
    finally:
        for thread in load:
            thread.stop_requested.set()
        for thread in load:
            thread.join(timeout=30)
    seen = answers()
    statuses = sum((thread.statuses for thread in load), Counter())

    variants: defaultdict[str, set[str | None]] = defaultdict(set)
    for answer in seen:
        variants[answer.unit].add(answer.variant)
    changed = sorted(unit for unit, values in variants.items() if len(values) > 1)
    final = {unit: values.pop() for unit, values in variants.items() if len(values) == 1}
    enrolled = sorted(unit for unit, variant in final.items() if variant is not None)

    # Afterwards, twice: the first pass stores whatever was only hashed while Redis was away.
    with client_for(service.base_url, SDK_KEY) as sdk:
        for _ in range(2):
            units = sorted(final)
            results = []
            for start in range(0, len(units), 1000):
                body = {"units": [{"unit_id": u} for u in units[start : start + 1000]], "experiments": [key]}
                response = sdk.post("/v1/assign/batch", json=body)
                assert response.status_code == 200, response.text
                results.extend(response.json()["results"])
    after = {r["unit_id"]: (r["assignments"][key]["variant"], r["assignments"][key]["reason"], r["degraded"])
             for r in results}  # fmt: skip
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        stored = {unit: client.hget(sticky_key(unit), key) for unit in final}
    finally:
        client.close()

    # Asked and answered while Redis was dead: degraded, except units this process knows are stored.
    during = [a for a in seen if killed_at < a.asked and a.seq < restarted_at]
    assert during and all(a.degraded != (a.reason == "sticky") for a in during)
    print(f"\nredis killed under load: {sum(statuses.values())} requests {dict(statuses)}, {len(seen)} unit answers "
          f"({len(during)} while Redis was down, {sum(a.degraded for a in seen)} degraded), {len(final)} units, "
          f"{len(enrolled)} enrolled, {sum(v is not None for v in stored.values())} stored in Redis afterwards, "
          f"{len(changed)} changed variant")  # fmt: skip
    assert set(statuses) == {200}
    assert not changed, f"{len(changed)} units saw two variants, e.g. {changed[:5]}"
    assert after == {
        unit: (variant, "sticky" if variant else "not_in_traffic", False) for unit, variant in final.items()
    }
    assert stored == final, "Redis does not hold exactly the enrolled units' variants"
