"""Concurrent first calls share Redis round trips (one pipeline per event-loop tick) and
stay sticky: real service over HTTP, real Redis."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import httpx
import redis
from assay.sticky import sticky_key

from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.support.services import SDK_KEY, create_running, metric_value

UNITS = 100
CALLS_PER_UNIT = 10


async def first_calls(base_url: str, key: str, units: list[str]) -> list[dict[str, Any]]:
    """Every call at once (up to 200 connections), in shuffled order."""
    bodies = [{"unit_id": unit, "experiments": [key]} for unit in units for _ in range(CALLS_PER_UNIT)]
    random.Random(16).shuffle(bodies)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    headers = {"Authorization": f"Bearer {SDK_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as client:
        replies = await asyncio.gather(*(client.post("/v1/assign", json=body) for body in bodies))
    assert {reply.status_code for reply in replies} == {200}, [r.text for r in replies if r.status_code != 200][:3]
    return [reply.json() for reply in replies]


def test_concurrent_first_calls_store_one_variant_per_unit(
    assignment: ServiceProcess, redis_server: RedisServer, admin: httpx.Client
) -> None:
    key = create_running(admin)["key"]
    units = [f"coalesce-{key}-{i}" for i in range(UNITS)]
    before = httpx.get(f"{assignment.base_url}/metrics").text

    answers = asyncio.run(first_calls(assignment.base_url, key, units))

    after = httpx.get(f"{assignment.base_url}/metrics").text
    by_unit: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for answer in answers:
        assert answer["degraded"] is False
        by_unit[answer["unit_id"]].append(answer["assignments"][key])
    assert sorted(by_unit) == sorted(units)
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        for unit, decisions in by_unit.items():
            assert len(decisions) == CALLS_PER_UNIT
            assert len({d["variant"] for d in decisions}) == 1, (unit, decisions)
            # Exactly one call stored the unit's assignment; every other call read it back.
            assert sorted(d["reason"] for d in decisions) == ["hash"] + ["sticky"] * (CALLS_PER_UNIT - 1)
            assert store.hgetall(sticky_key(unit)) == {key: decisions[0]["variant"]}
    finally:
        store.close()

    # The calls went through the coalesced path: fewer Redis round trips than requests that
    # needed Redis (calls answered from the process's cache of stored variants need none).
    round_trips = metric_value(after, "assay_sticky_round_trips_total") - metric_value(
        before, "assay_sticky_round_trips_total"
    )
    lookups = metric_value(after, "assay_sticky_lookups_total") - metric_value(before, "assay_sticky_lookups_total")
    assert lookups >= UNITS
    assert 1 <= round_trips < lookups
