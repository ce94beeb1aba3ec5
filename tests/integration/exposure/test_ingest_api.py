"""Exposures and events over real HTTP into a real broker, consumed back with kafka-python."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from deploy.broker import TansuBroker
from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.support.eventually import eventually
from tests.support.kafka import EVENTS, EXPOSURES, read_topics
from tests.support.services import ADMIN_KEY, SDK_KEY, client_for, create_running, exposure, metric_value

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_exposures_round_trip(ingest: httpx.Client, broker: TansuBroker, experiment: dict[str, Any]) -> None:
    key = experiment["key"]
    given = exposure(key, "unit-a", timestamp="2026-11-21T10:00:00+02:00")
    given["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 60))
    without_id = exposure(key, "unit-b", variant="control")
    del without_id["event_id"]
    started = time.time()
    response = ingest.post("/v1/exposures", json={"exposures": [given, without_id]})
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "rejected": []}

    messages = read_topics(broker.bootstrap, [EXPOSURES], lambda m: m.value["experiment"] == key)
    by_unit = {m.key: m for m in messages}
    assert sorted(by_unit) == ["unit-a", "unit-b"] and len(messages) == 2
    first = by_unit["unit-a"].value
    assert first["event_id"] == given["event_id"] and first["variant"] == "treatment"
    assert first["timestamp"] == given["timestamp"].replace("+00:00", ".000Z")
    generated = by_unit["unit-b"].value
    assert uuid.UUID(generated["event_id"]).version == 4
    assert set(generated) == {"event_id", "experiment", "variant", "unit_id", "timestamp", "received_at"}
    for value in (first, generated):
        assert RFC3339_UTC.match(value["received_at"])
        received = time.mktime(time.strptime(value["received_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert started - 2 <= received <= time.time() + 2


def test_events_round_trip(ingest: httpx.Client, broker: TansuBroker) -> None:
    unit = f"buyer-{uuid.uuid4().hex[:8]}"
    now_ms = int(time.time() * 1000)
    events = [
        {"event_id": "evt-" + uuid.uuid4().hex, "name": "purchase", "unit_id": unit, "timestamp": now_ms,
         "value": 12.5, "properties": {"currency": "EUR", "items": [1, 2], "coupon": None}},
        {"name": "session_start", "unit_id": unit, "timestamp": now_ms - 1000},
    ]  # fmt: skip
    response = ingest.post("/v1/events", json={"events": events})
    assert response.status_code == 202 and response.json() == {"accepted": 2, "rejected": []}
    messages = read_topics(broker.bootstrap, [EVENTS], lambda m: m.key == unit)
    by_name = {m.value["name"]: m.value for m in messages}
    assert len(messages) == 2 and all(m.topic == EVENTS for m in messages)
    purchase = by_name["purchase"]
    assert purchase["event_id"] == events[0]["event_id"] and purchase["value"] == 12.5
    assert purchase["properties"] == {"currency": "EUR", "items": [1, 2], "coupon": None}
    assert purchase["timestamp"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ms // 1000)) + (
        f".{now_ms % 1000:03d}Z"
    )
    session = by_name["session_start"]
    assert session["value"] is None and session["properties"] == {} and uuid.UUID(session["event_id"])


def test_partial_acceptance_reports_exact_indices(
    ingest: httpx.Client, broker: TansuBroker, admin: httpx.Client, experiment: dict[str, Any]
) -> None:
    key = experiment["key"]
    draft = admin.post("/v1/experiments", json={
        "key": f"draft-{uuid.uuid4().hex[:8]}", "name": "draft",
        "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]}).json()["key"]  # fmt: skip
    now = int(time.time() * 1000)
    items = [
        exposure(key, "ok-0"),
        exposure(key, "bad-1", variant="x"),
        exposure("no-such-experiment", "bad-2"),
        exposure(key, "bad-3", timestamp=now + 3_600_000),
        exposure(key, "bad-4", timestamp=now - 40 * 86_400_000),
        exposure(key, "bad-5\x00"),
        exposure(draft, "bad-6", variant="a"),
        exposure(key, "ok-7", variant="control"),
        "not an object",
        exposure(key, "bad-9", timestamp="yesterday"),
    ]
    response = ingest.post("/v1/exposures", json={"exposures": items})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 2
    errors = {r["index"]: r["error"] for r in body["rejected"]}
    assert sorted(errors) == [1, 2, 3, 4, 5, 6, 8, 9]
    assert errors[1] == f"unknown variant 'x' for experiment '{key}'"
    assert errors[2] == "unknown experiment 'no-such-experiment'"
    assert "ahead of server time" in errors[3] and "older than the 30-day horizon" in errors[4]
    assert "unit_id" in errors[5] and "control characters" in errors[5]
    assert errors[6].startswith(f"experiment '{draft}' is draft")
    assert errors[8] == "each item must be a JSON object, not str"
    assert "RFC 3339" in errors[9]
    messages = read_topics(broker.bootstrap, [EXPOSURES], lambda m: m.value["experiment"] == key)
    assert sorted(m.key for m in messages) == ["ok-0", "ok-7"]


def test_paused_and_stopped_experiments_still_take_late_exposures(
    ingest: httpx.Client, admin: httpx.Client, experiment: dict[str, Any]
) -> None:
    key = experiment["key"]
    for status in ("paused", "running", "stopped"):
        assert admin.post(f"/v1/experiments/{key}/status", json={"status": status}).status_code == 200
        response = ingest.post("/v1/exposures", json={"exposures": [exposure(key, f"late-{status}")]})
        assert response.json() == {"accepted": 1, "rejected": []}, status
    assert admin.post(f"/v1/experiments/{key}/status", json={"status": "archived"}).status_code == 200

    def refused() -> dict[str, Any] | None:
        answer = ingest.post("/v1/exposures", json={"exposures": [exposure(key, "after-archive")]}).json()
        return dict(answer) if answer["accepted"] == 0 else None

    rejected = eventually(refused, timeout=5, interval=0.1, message="exposures were still accepted after archiving")
    assert rejected["rejected"][0]["error"].startswith(f"experiment '{key}' is archived")


def test_a_new_experiment_is_usable_at_once(ingest: httpx.Client, admin: httpx.Client) -> None:
    key = create_running(admin)["key"]
    response = ingest.post("/v1/exposures", json={"exposures": [exposure(key, "early-bird")]})
    assert response.json() == {"accepted": 1, "rejected": []}


def test_roles_and_keys(exposure_service: ServiceProcess) -> None:
    body: dict[str, Any] = {"exposures": []}
    with client_for(exposure_service.base_url, ADMIN_KEY) as admin_client:
        refused = admin_client.post("/v1/exposures", json=body)
        assert refused.status_code == 403 and refused.json()["detail"] == "this endpoint needs an sdk key"
        assert admin_client.post("/v1/events", json={"events": []}).status_code == 403
    with client_for(exposure_service.base_url, None) as anonymous:
        assert anonymous.post("/v1/exposures", json=body).status_code == 401
        with client_for(exposure_service.base_url, "wrong-key-0123456789") as wrong:
            assert wrong.post("/v1/events", json={"events": []}).status_code == 401
        assert anonymous.get("/healthz").json() == {"status": "ok"}


def test_readiness_and_metrics(
    ingest: httpx.Client, exposure_service: ServiceProcess, experiment: dict[str, Any]
) -> None:
    key = experiment["key"]
    ingest.post("/v1/exposures", json={"exposures": [exposure(key, "m-1"), exposure(key, "m-2", variant="zz")]})
    with client_for(exposure_service.base_url, None) as anonymous:
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200, ready.text
        report = ready.json()
        assert report["ready"] and report["broker"]["connected"] and report["config_loaded"]
        assert report["spool"]["records"] == 0 and report["spool"]["full"] is False
        metrics = anonymous.get("/metrics").text
    assert metric_value(metrics, "assay_exposure_items_accepted_total", kind="exposure") >= 1
    assert metric_value(metrics, "assay_exposure_items_rejected_total", kind="exposure", reason="unknown_variant") >= 1
    assert metric_value(metrics, "assay_exposure_broker_connected") == 1
    assert metric_value(metrics, "assay_exposure_produce_seconds_count", path="direct") >= 1
    assert metric_value(metrics, "assay_exposure_spool_bytes") == 0


def test_without_a_registry_the_service_pushes_back(
    tmp_path: Path, broker: TansuBroker, start_exposure: Callable[..., ServiceProcess]
) -> None:
    dead_redis = RedisServer(tmp_path / "never-started")  # a free port nobody listens on
    service = start_exposure(dead_redis.url, broker.bootstrap, ASSAY_REDIS_TIMEOUT_MS="100")
    with client_for(service.base_url, SDK_KEY) as client:
        response = client.post("/v1/exposures", json={"exposures": [exposure("k", "u")]})
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        assert "registry has not been loaded" in response.json()["detail"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["config_loaded"] is False
    service.stop()
