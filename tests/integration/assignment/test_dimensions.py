"""An experiment's `dimensions` over real HTTP with real Redis: stored on create and PATCH
(also while running), audit-logged, refused with a 422 that says why, carried by `/v1/config`,
and named by an exposed `/v1/assign` answer (and only by one)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.services import create_running, experiment_body


def test_dimensions_are_stored_returned_and_audited(admin: httpx.Client) -> None:
    created = admin.post("/v1/experiments", json=experiment_body(dimensions=["country", "platform"]))
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert created.json()["dimensions"] == ["country", "platform"]
    assert admin.get(f"/v1/experiments/{key}").json()["dimensions"] == ["country", "platform"]
    plain = admin.post("/v1/experiments", json=experiment_body()).json()
    assert plain["dimensions"] == []

    started = admin.post(f"/v1/experiments/{key}/status", json={"status": "running"})
    assert started.status_code == 200
    changed = admin.patch(f"/v1/experiments/{key}", json={"dimensions": ["country", "os.version"]})
    assert changed.status_code == 200, changed.text  # allowed while running, without a reason
    assert changed.json()["dimensions"] == ["country", "os.version"] and changed.json()["plan_changes"] == []
    cleared = admin.patch(f"/v1/experiments/{key}", json={"dimensions": []})
    assert cleared.status_code == 200 and cleared.json()["dimensions"] == []

    entries = admin.get(f"/v1/experiments/{key}/audit").json()
    assert entries[0]["changes"]["created"]["dimensions"] == ["country", "platform"]
    updates = [e["changes"] for e in entries if e["action"] == "update"]
    assert updates == [
        {"dimensions": {"from": ["country", "platform"], "to": ["country", "os.version"]}},
        {"dimensions": {"from": ["country", "os.version"], "to": []}},
    ]


@pytest.mark.parametrize(
    ("dimensions", "message"),
    [(["a", "b", "c", "d", "e", "f"], "dimensions: List should have at most 5 items after validation, not 6"),
     (["country", "country"], "dimensions: Value error, dimensions must be distinct"),
     (["bad name"], "dimensions.0: String should match pattern '^[A-Za-z_][A-Za-z0-9_.-]{0,63}$'"),
     (["country", "9lives"], "dimensions.1: String should match pattern"),
     ("country", "dimensions: Input should be a valid list"), ([7], "dimensions.0: Input should be a valid string")],
)  # fmt: skip
def test_bad_dimensions_are_422_on_create_and_patch(admin: httpx.Client, dimensions: Any, message: str) -> None:
    created = admin.post("/v1/experiments", json=experiment_body(dimensions=dimensions))
    assert created.status_code == 422 and message in created.json()["detail"], created.text
    key = admin.post("/v1/experiments", json=experiment_body(dimensions=["country"])).json()["key"]
    patched = admin.patch(f"/v1/experiments/{key}", json={"dimensions": dimensions})
    assert patched.status_code == 422 and message in patched.json()["detail"], patched.text
    null = admin.patch(f"/v1/experiments/{key}", json={"dimensions": None})
    assert null.status_code == 422 and "'dimensions' cannot be null" in null.json()["detail"]
    assert admin.get(f"/v1/experiments/{key}").json()["dimensions"] == ["country"]


def test_config_and_exposed_answers_name_the_dimensions(admin: httpx.Client, sdk: httpx.Client) -> None:
    sliced = create_running(admin, dimensions=["country", "platform"])["key"]
    plain = create_running(admin)["key"]
    config = {e["key"]: e for e in sdk.get("/v1/config").json()["experiments"]}
    assert config[sliced]["dimensions"] == ["country", "platform"] and config[plain]["dimensions"] == []

    def answer(unit: str, **fields: Any) -> dict[str, Any]:
        response = sdk.post("/v1/assign", json={"unit_id": unit, "experiments": [sliced, plain], **fields})
        assert response.status_code == 200, response.text
        return dict(response.json()["assignments"])

    first = answer("dim-unit", attributes={"country": "US"})
    assert first[sliced]["reason"] == "hash" and first[sliced]["dimensions"] == ["country", "platform"]
    assert set(first[plain]) == {"variant", "reason"}  # no dimensions: the answer keeps its old shape
    again = answer("dim-unit")
    assert again[sliced]["reason"] == "sticky" and again[sliced]["dimensions"] == ["country", "platform"]

    admin.put(f"/v1/experiments/{sliced}/overrides/qa-unit", json={"variant": "treatment"})
    overridden = answer("qa-unit")[sliced]  # QA traffic is never exposed, so nothing to attach
    assert overridden == {"variant": "treatment", "reason": "override"}

    batch = sdk.post("/v1/assign/batch", json={"units": [{"unit_id": "dim-unit"}], "experiments": [sliced]})
    assert batch.json()["results"][0]["assignments"][sliced]["dimensions"] == ["country", "platform"]
    admin.post(f"/v1/experiments/{sliced}/status", json={"status": "paused"})
    assert answer("dim-unit")[sliced] == {"variant": None, "reason": "not_running"}


def test_a_dimension_change_reaches_the_answers(admin: httpx.Client, sdk: httpx.Client) -> None:
    key = create_running(admin, dimensions=["country"])["key"]
    admin.patch(f"/v1/experiments/{key}", json={"dimensions": ["platform"]})
    body = {"unit_id": "changed-unit", "experiments": [key]}
    assert sdk.post("/v1/assign", json=body).json()["assignments"][key]["dimensions"] == ["platform"]
    admin.patch(f"/v1/experiments/{key}", json={"dimensions": []})
    assert "dimensions" not in sdk.post("/v1/assign", json=body).json()["assignments"][key]
