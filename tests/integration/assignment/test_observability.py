"""JSON logs carry request ids and never an API key; metrics are exposed."""

from __future__ import annotations

import json

import httpx

from deploy.processes import ServiceProcess
from tests.support.eventually import eventually
from tests.support.services import ADMIN_KEY, SDK_KEY, client_for, create_running


def log_entries(service: ServiceProcess) -> list[dict]:  # type: ignore[type-arg]
    lines = service.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_request_id_is_echoed_and_logged(assignment: ServiceProcess, sdk: httpx.Client) -> None:
    response = sdk.post("/v1/assign", json={"unit_id": "log-unit"}, headers={"X-Request-Id": "trace-abc-123"})
    assert response.headers["x-request-id"] == "trace-abc-123"
    generated = sdk.get("/v1/config").headers["x-request-id"]
    assert len(generated) == 32
    entries = eventually(
        lambda: [e for e in log_entries(assignment) if e.get("request_id") == "trace-abc-123"],
        timeout=5, message="the request id never reached the log",
    )  # fmt: skip
    assert entries[0]["route"] == "/v1/assign" and entries[0]["status"] == 200
    assert entries[0]["service"] == "assignment" and entries[0]["level"] == "info"


def test_keys_never_appear_in_logs_or_error_bodies(assignment: ServiceProcess) -> None:
    wrong = "not-a-real-key-but-secret-looking-0001"
    bodies = []
    for key in (ADMIN_KEY, SDK_KEY, wrong):
        with client_for(assignment.base_url, key) as client:
            bodies.append(client.post("/v1/experiments", json={"key": "BAD"}).text)
            bodies.append(client.post("/v1/assign", json={"unit_id": 5}).text)
            bodies.append(client.get("/v1/experiments/nope").text)
    with client_for(assignment.base_url, ADMIN_KEY) as admin:
        create_running(admin)
    text = assignment.log_path.read_text()
    assert text  # the service does log
    for secret in (ADMIN_KEY, SDK_KEY, wrong):
        assert secret not in text
        assert all(secret not in body for body in bodies)
