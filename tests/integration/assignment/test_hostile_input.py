"""Malformed, oversized and hostile input gets a 4xx with a message, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.services import create_running
from tests.support.strategies import json_values

SDK_PATHS = ["/v1/assign", "/v1/assign/batch"]
ADMIN_PATHS = ["/v1/experiments"]


def assert_client_error(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text[:300])
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"], body
    return dict(body)


def raw(client: httpx.Client, path: str, content: bytes, content_type: str = "application/json") -> httpx.Response:
    return client.post(path, content=content, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    "content",
    [b"{", b"not json", b"", b"[]", b'"string"', b"42", b"null", b'{"unit_id": "u",}', b"\xff\xfe\x00garbage",
     b'{"unit_id": "u"} trailing'],
)  # fmt: skip
def test_malformed_bodies(sdk: httpx.Client, admin: httpx.Client, content: bytes) -> None:
    for path in SDK_PATHS:
        assert_client_error(raw(sdk, path, content))
    assert_client_error(raw(admin, "/v1/experiments", content))


def test_oversized_body_is_413(sdk: httpx.Client, admin: httpx.Client) -> None:
    huge = json.dumps({"unit_id": "u", "attributes": {"blob": "x" * 2_000_000}}).encode()
    for client, path in ((sdk, "/v1/assign"), (sdk, "/v1/assign/batch"), (admin, "/v1/experiments")):
        body = assert_client_error(raw(client, path, huge), 413)
        assert "byte limit" in body["detail"]


def test_oversized_chunked_body_is_413(sdk: httpx.Client) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"unit_id": "u", "attributes": {"blob": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    response = sdk.post("/v1/assign", content=chunks(), headers={"Content-Type": "application/json"})
    assert_client_error(response, 413)


def test_deeply_nested_json(sdk: httpx.Client, admin: httpx.Client) -> None:
    depth = 200_000
    nested = b'{"unit_id": "u", "attributes": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    assert_client_error(raw(sdk, "/v1/assign", nested))
    assert_client_error(raw(admin, "/v1/experiments", b'{"key": ' + b"[" * depth + b"]" * depth + b"}"))


@pytest.mark.parametrize(
    "body",
    [{"unit_id": 42}, {"unit_id": None}, {"unit_id": ["u"]}, {"unit_id": "u", "attributes": []},
     {"unit_id": "u", "attributes": {"a": {"nested": 1}}}, {"unit_id": "u", "experiments": "k"},
     {"unit_id": "u", "experiments": [1, 2]}, {"unit_id": "u", "unexpected": True},
     {"unit_id": "x" * 10_000}, {"unit_id": ""}, {"unit_id": "bad\x00id"}, {"unit_id": "tab\tid"},
     {"unit_id": "u", "attributes": {f"k{i}": i for i in range(1000)}},
     {"unit_id": "u", "attributes": {"a": "x" * 5000}},
     {"unit_id": "u", "attributes": {"a": list(range(500))}},
     {"unit_id": "u", "experiments": ["k"] * 1000}, {"unit_id": "u", "experiments": ["BAD KEY"]}],
)  # fmt: skip
def test_wrong_types_and_limits_on_assign(sdk: httpx.Client, body: dict[str, Any]) -> None:
    assert_client_error(sdk.post("/v1/assign", json=body), 422)


def test_nan_and_infinity_are_refused(sdk: httpx.Client, admin: httpx.Client) -> None:
    for literal in (b"NaN", b"Infinity", b"-Infinity"):
        assert_client_error(raw(sdk, "/v1/assign", b'{"unit_id": "u", "attributes": {"a": ' + literal + b"}}"), 422)
        experiment = (
            b'{"key": "nan-exp", "name": "n", "traffic": '
            + literal
            + b', "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]}'
        )
        assert_client_error(raw(admin, "/v1/experiments", experiment), 422)


def test_unicode_unit_ids_are_fine(admin: httpx.Client, sdk: httpx.Client) -> None:
    key = create_running(admin)["key"]
    for unit in ("用户-42", "émile", "🙂🙂", "ﷺ", "a" * 256, "x y z", "\u200b"):
        response = sdk.post("/v1/assign", json={"unit_id": unit, "experiments": [key]})
        assert response.status_code == 200 and response.json()["unit_id"] == unit
        assert response.json()["assignments"][key]["variant"] in ("control", "treatment")


def test_batch_hostile_shapes(sdk: httpx.Client) -> None:
    assert_client_error(sdk.post("/v1/assign/batch", json={"units": []}), 422)
    assert_client_error(sdk.post("/v1/assign/batch", json={"units": [{"unit_id": 1}]}), 422)
    assert_client_error(sdk.post("/v1/assign/batch", json={"units": "everyone"}), 422)
    assert_client_error(sdk.post("/v1/assign/batch", json={"units": [{"unit_id": f"u{i}"} for i in range(5000)]}), 413)


def test_hostile_registry_writes(admin: httpx.Client) -> None:
    base = {
        "key": "hostile-exp",
        "name": "n",
        "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
    }
    for change in ({"variants": [{"key": f"v{i}", "weight": 1 / 10_000} for i in range(10_000)]},
                   {"name": "n" * 100_000}, {"key": "../../etc/passwd"}, {"targeting": "everyone"},
                   {"targeting": [{"attribute": "a", "op": "in", "value": list(range(5000))}]},
                   {"layer": "x" * 500}, {"salt": ""}, {"metrics": {"primary": ["Bad Name"]}}):  # fmt: skip
        assert_client_error(admin.post("/v1/experiments", json={**base, **change}))
    long_unit = "u" * 10_000
    assert_client_error(admin.put(f"/v1/experiments/hostile-exp/overrides/{long_unit}", json={"variant": "a"}))
    assert_client_error(admin.post("/v1/experiments/x/status", json={"status": "exploded"}), 422)
    assert_client_error(admin.get("/v1/experiments/x/audit", params={"limit": -1}), 422)
    assert_client_error(admin.patch("/v1/experiments/" + "k" * 100, json={}))


@pytest.mark.parametrize("header", ["Bearer", "Basic abc", "Bearer " + "k" * 10_000, "Bearer ключ", "bearer  x y"])
def test_odd_authorization_headers_are_401(sdk: httpx.Client, header: str) -> None:
    response = httpx.post(
        f"{sdk.base_url}/v1/assign", json={"unit_id": "u"}, headers={"Authorization": header.encode("utf-8")}
    )  # type: ignore[dict-item]
    assert_client_error(response, 401)


assign_like = st.fixed_dictionaries(
    {}, optional={"unit_id": json_values | st.text(max_size=300), "attributes": json_values,
                  "experiments": json_values, "units": json_values},
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=assign_like, path=st.sampled_from(SDK_PATHS))
def test_random_json_never_500s(sdk: httpx.Client, payload: dict[str, Any], path: str) -> None:
    content = json.dumps(payload, allow_nan=True).encode()
    response = raw(sdk, path, content)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
