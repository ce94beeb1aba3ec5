"""The evaluation corpus (tests/golden/evaluation.json) through the real assignment service:
each case's experiment is created over HTTP (its overrides set, its status reached through
the lifecycle), its stored sticky variant written into Redis where the service keeps it, and
`POST /v1/assign` must answer exactly what the SDK's evaluation answers
(tests/unit/sdk/test_evaluation_corpus.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from assay.sticky import sticky_key

from deploy.embedded import RedisServer
from tests.support.services import experiment_body, unique_key

CORPUS = json.loads((Path(__file__).parents[2] / "golden" / "evaluation.json").read_text())
# The lifecycle steps from a new (draft) experiment to each status.
STATUS_PATH = {"draft": [], "running": ["running"], "paused": ["running", "paused"],
               "stopped": ["running", "stopped"]}  # fmt: skip
# Where each status goes when the case is over, so layer slices are released for the next case.
RETIRE = {"draft": "archived", "running": "stopped", "paused": "stopped"}


@pytest.fixture
def sticky_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


def set_status(admin: httpx.Client, key: str, status: str) -> None:
    response = admin.post(f"/v1/experiments/{key}/status", json={"status": status})
    assert response.status_code == 200, response.text


def create_case_experiment(admin: httpx.Client, config: dict[str, Any]) -> str:
    """The case's config as a service experiment of its own (a fresh key; the salt decides)."""
    fields = ("variants", "traffic", "salt", "targeting", "layer", "layer_share")
    body = experiment_body(unique_key("corpus"), **{name: config.get(name) for name in fields})
    created = admin.post("/v1/experiments", json=body)
    assert created.status_code == 201, created.text
    key = str(created.json()["key"])
    assert created.json()["layer_range"] == config["layer_range"], "the service allocated another slice"
    for unit_id, variant in config["overrides"].items():
        response = admin.put(f"/v1/experiments/{key}/overrides/{unit_id}", json={"variant": variant})
        assert response.status_code == 200, response.text
    for status in STATUS_PATH[config["status"]]:
        set_status(admin, key, status)
    return key


def assign(sdk: httpx.Client, key: str, case: dict[str, Any]) -> dict[str, Any]:
    body = {"unit_id": case["unit_id"], "attributes": case["attributes"], "experiments": [key]}
    response = sdk.post("/v1/assign", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["degraded"] is False
    return dict(response.json()["assignments"][key])


@pytest.mark.parametrize("case", CORPUS["cases"], ids=lambda case: case["name"])
def test_the_service_answers_like_the_sdk(
    case: dict[str, Any], admin: httpx.Client, sdk: httpx.Client, sticky_redis: redis.Redis
) -> None:
    config = case["experiment"]
    if config is None:
        assert assign(sdk, unique_key("missing"), case) == case["expected"]
        return
    key = create_case_experiment(admin, config)
    try:
        if case["sticky"] is not None:
            sticky_redis.hset(sticky_key(case["unit_id"]), key, case["sticky"])
        first = assign(sdk, key, case)
        assert first == case["expected"]
        again = assign(sdk, key, case)
        if first["reason"] == "hash" and case["sticky"] is None:  # it was stored: from now on it is sticky
            assert again == {"variant": first["variant"], "reason": "sticky"}
        else:
            assert again == first
    finally:
        if config["status"] in RETIRE:
            set_status(admin, key, RETIRE[config["status"]])
