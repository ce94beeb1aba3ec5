"""The experiment registry over real HTTP with real Redis."""

from __future__ import annotations

import httpx
import pytest

from tests.support.services import ADMIN_KEY, SDK_KEY, client_for, create_running, experiment_body


def test_create_read_list(admin: httpx.Client) -> None:
    body = experiment_body(hypothesis="green converts", owner="payments", traffic=0.5)
    created = admin.post("/v1/experiments", json=body)
    assert created.status_code == 201
    doc = created.json()
    assert doc["status"] == "draft" and doc["version"] == 1 and doc["salt"] == body["key"]
    assert doc["created_at"] == doc["updated_at"] and doc["traffic"] == 0.5
    assert admin.get(f"/v1/experiments/{body['key']}").json() == doc
    assert body["key"] in [e["key"] for e in admin.get("/v1/experiments").json()]


def test_duplicate_key_is_409(admin: httpx.Client) -> None:
    body = experiment_body()
    assert admin.post("/v1/experiments", json=body).status_code == 201
    again = admin.post("/v1/experiments", json=body)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]


def test_unknown_experiment_is_404(admin: httpx.Client) -> None:
    response = admin.get("/v1/experiments/no-such-thing")
    assert response.status_code == 404 and "does not exist" in response.json()["detail"]


def test_validation_errors_explain_the_fix(admin: httpx.Client) -> None:
    bad = experiment_body(variants=[{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.4}])
    response = admin.post("/v1/experiments", json=bad)
    assert response.status_code == 422
    assert "variant weights sum to 0.9; they must sum to 1" in response.json()["detail"]


def test_optimistic_concurrency(admin: httpx.Client) -> None:
    key = admin.post("/v1/experiments", json=experiment_body()).json()["key"]
    first = admin.patch(f"/v1/experiments/{key}", json={"version": 1, "name": "first"})
    assert first.status_code == 200 and first.json()["version"] == 2
    stale = admin.patch(f"/v1/experiments/{key}", json={"version": 1, "name": "second"})
    assert stale.status_code == 409 and "version mismatch" in stale.json()["detail"]
    assert admin.get(f"/v1/experiments/{key}").json()["name"] == "first"


def test_running_experiment_refuses_reshuffling_changes(admin: httpx.Client) -> None:
    key = create_running(admin)["key"]
    for change in (
        {"salt": "other"},
        {"variants": [{"key": "control", "weight": 0.1}, {"key": "treatment", "weight": 0.9}]},
    ):
        response = admin.patch(f"/v1/experiments/{key}", json=change)
        assert response.status_code == 409 and "would move enrolled units" in response.json()["detail"]
    assert admin.post(f"/v1/experiments/{key}/status", json={"status": "paused"}).status_code == 200
    assert admin.patch(f"/v1/experiments/{key}", json={"salt": "other"}).status_code == 409
    assert admin.patch(f"/v1/experiments/{key}", json={"traffic": 0.3}).status_code == 200


STEPS = [("running", 200), ("draft", 409), ("paused", 200), ("paused", 409), ("running", 200),
         ("stopped", 200), ("running", 409), ("archived", 200), ("draft", 409)]  # fmt: skip


def test_lifecycle_over_http(admin: httpx.Client) -> None:
    key = admin.post("/v1/experiments", json=experiment_body()).json()["key"]
    for status, expected in STEPS:
        response = admin.post(f"/v1/experiments/{key}/status", json={"status": status, "reason": "t"})
        assert response.status_code == expected, (status, response.text)
        if expected == 409:
            assert "cannot move" in response.json()["detail"] or "already" in response.json()["detail"]
    archived = admin.patch(f"/v1/experiments/{key}", json={"name": "again"})
    assert archived.status_code == 409 and "read-only" in archived.json()["detail"]


def test_draft_can_be_archived_directly(admin: httpx.Client) -> None:
    key = admin.post("/v1/experiments", json=experiment_body()).json()["key"]
    assert admin.post(f"/v1/experiments/{key}/status", json={"status": "archived"}).json()["status"] == "archived"


def test_audit_log_records_every_change_with_actor(admin: httpx.Client) -> None:
    key = admin.post("/v1/experiments", json=experiment_body()).json()["key"]
    admin.patch(f"/v1/experiments/{key}", json={"traffic": 0.2})
    admin.post(f"/v1/experiments/{key}/status", json={"status": "running", "reason": "launch"})
    admin.put(f"/v1/experiments/{key}/overrides/qa-1", json={"variant": "treatment"})
    admin.delete(f"/v1/experiments/{key}/overrides/qa-1")
    entries = admin.get(f"/v1/experiments/{key}/audit").json()
    assert [e["action"] for e in entries] == ["create", "update", "status", "override_set", "override_delete"]
    assert entries[1]["changes"] == {"traffic": {"from": 1.0, "to": 0.2}}
    assert entries[2]["reason"] == "launch"
    assert entries[3]["changes"] == {"override": {"unit_id": "qa-1", "to": "treatment"}}
    assert [e["version"] for e in entries] == [1, 2, 3, 4, 5]
    assert all(e["actor"].startswith("admin-") and ADMIN_KEY not in e["actor"] for e in entries)
    assert all(e["at"].endswith("Z") for e in entries)


def test_override_validation(admin: httpx.Client) -> None:
    key = create_running(admin)["key"]
    bad = admin.put(f"/v1/experiments/{key}/overrides/u1", json={"variant": "nope"})
    assert bad.status_code == 422 and "use one of control, treatment" in bad.json()["detail"]
    missing = admin.delete(f"/v1/experiments/{key}/overrides/never-set")
    assert missing.status_code == 404
    assert admin.put("/v1/experiments/no-such/overrides/u1", json={"variant": "a"}).status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/experiments"), ("POST", "/v1/experiments"), ("GET", "/v1/experiments/x"),
     ("PATCH", "/v1/experiments/x"), ("POST", "/v1/experiments/x/status"),
     ("GET", "/v1/experiments/x/audit"), ("PUT", "/v1/experiments/x/overrides/u"),
     ("DELETE", "/v1/experiments/x/overrides/u")],
)  # fmt: skip
def test_admin_endpoints_need_an_admin_key(assignment, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    for key, expected in ((None, 401), ("wrong-key-xxxxxxxxxxxx", 401), (SDK_KEY, 403)):
        with client_for(assignment.base_url, key) as client:
            response = client.request(method, path, json={})
        assert response.status_code == expected, (key, response.text)
        assert response.json()["detail"]
        if expected == 401:
            assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/assign"), ("POST", "/v1/assign/batch"), ("GET", "/v1/config")]
)
def test_sdk_endpoints_need_an_sdk_key(assignment, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    for key, expected in ((None, 401), ("wrong-key-xxxxxxxxxxxx", 401), (ADMIN_KEY, 403)):
        with client_for(assignment.base_url, key) as client:
            response = client.request(method, path, json={"unit_id": "u"})
        assert response.status_code == expected, (key, response.text)


def test_health_and_metrics_need_no_key(assignment) -> None:  # type: ignore[no-untyped-def]
    with client_for(assignment.base_url, None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["redis"] is True
        assert "assay_http_requests_total" in client.get("/metrics").text
