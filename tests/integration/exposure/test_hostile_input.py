"""Malformed, oversized and hostile bodies: a 4xx with a message or a per-item rejection,
never a 500."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.services import exposure
from tests.support.strategies import json_values

PATHS = {"/v1/exposures": "exposures", "/v1/events": "events"}


def assert_client_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    return detail


def raw(client: httpx.Client, path: str, content: bytes, content_type: str = "application/json") -> httpx.Response:
    return client.post(path, content=content, headers={"Content-Type": content_type})


def event(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": "purchase", "unit_id": "u1", "timestamp": int(time.time() * 1000)}
    item.update(fields)
    return item


@pytest.mark.parametrize(
    "content",
    [b"{", b"not json", b"", b'{"exposures": [],}', b"\xff\xfe\x00garbage", b'{"exposures": []} trailing',
     b"[" * 50_000 + b"]" * 50_000],
)  # fmt: skip
def test_malformed_json_is_422(ingest: httpx.Client, content: bytes) -> None:
    for path in PATHS:
        assert "not valid JSON" in assert_client_error(raw(ingest, path, content), 422)


@pytest.mark.parametrize(
    ("body", "message"),
    [([], "must be a JSON object"), ("text", "must be a JSON object"), (None, "must be a JSON object"),
     ({}, "is required"), ({"items": []}, "unknown field 'items'"), ({"FIELD": {"a": 1}}, "must be a list"),
     ({"FIELD": "x"}, "must be a list"), ({"FIELD": [], "sdk": "py"}, "unknown field 'sdk'")],
)  # fmt: skip
def test_malformed_envelopes_are_422(ingest: httpx.Client, body: Any, message: str) -> None:
    for path, field in PATHS.items():
        payload = {field if k == "FIELD" else k: v for k, v in body.items()} if isinstance(body, dict) else body
        assert message in assert_client_error(raw(ingest, path, json.dumps(payload).encode()), 422)


def test_too_many_items_is_413(ingest: httpx.Client, experiment: dict[str, Any]) -> None:
    items = [exposure(experiment["key"], f"u{i}") for i in range(1001)]
    detail = assert_client_error(ingest.post("/v1/exposures", json={"exposures": items}), 413)
    assert detail == "1001 exposures in one request; send at most 1000 per request"
    detail = assert_client_error(ingest.post("/v1/events", json={"events": [event()] * 1001}), 413)
    assert detail == "1001 events in one request; send at most 1000 per request"
    assert ingest.post("/v1/events", json={"events": [event()] * 1000}).json()["accepted"] == 1000


def test_a_5_mb_body_is_413(ingest: httpx.Client) -> None:
    body = json.dumps({"events": [event(properties={"blob": "x" * 5_000_000})]}).encode()
    for path in PATHS:
        assert "byte limit" in assert_client_error(raw(ingest, path, body), 413)

    def chunks() -> Iterator[bytes]:
        yield b'{"events": [{"name": "a", "properties": {"blob": "'
        for _ in range(80):
            yield b"x" * 65536
        yield b'"}}]}'

    chunked = ingest.post("/v1/events", content=chunks(), headers={"Content-Type": "application/json"})
    assert_client_error(chunked, 413)


def test_non_json_content_type_is_415(ingest: httpx.Client) -> None:
    detail = assert_client_error(raw(ingest, "/v1/events", b'{"events": []}', "text/plain"), 415)
    assert "application/json" in detail
    assert raw(ingest, "/v1/events", b'{"events": []}', "application/json; charset=utf-8").status_code == 202


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinity_reject_only_their_item(ingest: httpx.Client, literal: bytes) -> None:
    now = str(int(time.time() * 1000)).encode()
    good = b'{"name": "ok", "unit_id": "u", "timestamp": ' + now + b"}"
    bad_value = b'{"name": "x", "unit_id": "u", "timestamp": ' + now + b', "value": ' + literal + b"}"
    bad_property = b'{"name": "x", "unit_id": "u", "timestamp": ' + now + b', "properties": {"p": ' + literal + b"}}"
    bad_time = b'{"name": "x", "unit_id": "u", "timestamp": ' + literal + b"}"
    body = b'{"events": [' + b", ".join([good, bad_value, bad_property, bad_time]) + b"]}"
    response = raw(ingest, "/v1/events", body)
    assert response.status_code == 202, response.text
    result = response.json()
    assert result["accepted"] == 1 and [r["index"] for r in result["rejected"]] == [1, 2, 3]
    errors = [r["error"] for r in result["rejected"]]
    assert errors[0] == "value: Input should be a finite number"
    assert "finite numbers" in errors[1] and "finite" in errors[2]


def test_wrong_types_and_hostile_items_are_rejected_one_by_one(
    ingest: httpx.Client, experiment: dict[str, Any]
) -> None:
    key = experiment["key"]
    exposures: list[Any] = [
        exposure(key, "fine"), exposure(key, 42), exposure(key, None), exposure(key, "u", variant=["x"]),
        exposure(key, "tab\tid"), exposure(key, "nul\x00"), exposure(key, "x" * 10_000),
        exposure(key, "u", event_id="bad\nid"), exposure(key, "u", event_id=""),
        exposure(key, "u", timestamp=True),
        exposure(key, "u", timestamp=[1]), {**exposure(key, "u"), "experiment": "../../etc/passwd"},
        exposure(key, "u", extra={"x": 1}), {"unit_id": "u"}, [], None, 7, exposure(key, "用户-🙂"),
    ]  # fmt: skip
    response = ingest.post("/v1/exposures", json={"exposures": exposures})
    assert response.status_code == 202
    result = response.json()
    assert result["accepted"] == 2
    assert [r["index"] for r in result["rejected"]] == list(range(1, 17))
    assert all(r["error"] and len(r["error"]) <= 300 for r in result["rejected"])
    assert "x" * 100 not in response.text  # inputs are not echoed back


def test_huge_property_maps_are_rejected_per_item(ingest: httpx.Client) -> None:
    events = [
        event(properties={f"k{i}": i for i in range(10_000)}),
        event(properties={"a": {"b": {"c": {"d": 1}}}}),
        event(properties={"blob": "x" * 100_000}), event(properties={"a": list(range(5000))}),
        event(properties={"k" * 1000: 1}), event(properties={"nested": [[[[[]]]]]}), event(),
    ]  # fmt: skip
    result = ingest.post("/v1/events", json={"events": events}).json()
    assert result["accepted"] == 1 and [r["index"] for r in result["rejected"]] == [0, 1, 2, 3, 4, 5]
    assert "10000 properties; at most 64" in result["rejected"][0]["error"]


def test_deeply_nested_items_never_500(ingest: httpx.Client) -> None:
    deep = b'{"events": [{"name": "a", "unit_id": "u", "timestamp": 1, "properties": {"a": ' + (
        b"[" * 900 + b"]" * 900
    ) + b"}}]}"  # fmt: skip
    response = raw(ingest, "/v1/events", deep)
    assert response.status_code == 202 and response.json()["accepted"] == 0


item_like = st.fixed_dictionaries(
    {}, optional={name: json_values | st.text(max_size=50) for name in (
        "event_id", "experiment", "variant", "unit_id", "timestamp", "name", "value", "properties", "attributes")},
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(item_like | json_values, max_size=5), path=st.sampled_from(sorted(PATHS)))
def test_random_items_never_500(ingest: httpx.Client, items: list[Any], path: str) -> None:
    content = json.dumps({PATHS[path]: items}, allow_nan=True).encode()
    response = raw(ingest, path, content)
    assert response.status_code == 202, (response.status_code, response.text[:300])
    result = response.json()
    assert result["accepted"] + len(result["rejected"]) == len(items)
