"""Exposure attributes over real HTTP: accepted maps reach the topic as sent (through the spool
too), a map that breaks the rules rejects only its own item, with the reason, never a 500."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from deploy.broker import TansuBroker
from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.support.eventually import eventually
from tests.support.kafka import EXPOSURES, read_topics
from tests.support.services import SDK_KEY, client_for, exposure, metric_value, readiness, wait_until_drained

SLICED = {"country": "US", "platform": "ios", "os.version": "17.1", "_tier": ""}


def by_unit(bootstrap: str, key: str) -> dict[str, dict[str, Any]]:
    """The message of each unit. A produce that timed out after the broker stored it comes back
    on replay (removed downstream by event_id): such copies must be the same message."""
    messages = read_topics(bootstrap, [EXPOSURES], lambda m: m.value["experiment"] == key)
    values = {m.key: m.value for m in messages}
    assert all(m.value == values[m.key] for m in messages), "one message per unit"
    return values


def test_accepted_attributes_reach_the_topic_and_bad_ones_are_rejected_per_item(
    ingest: httpx.Client, broker: TansuBroker, experiment: dict[str, Any]
) -> None:
    key = experiment["key"]
    largest = {f"a{i}": "é" * 256 for i in range(20)}
    items: list[Any] = [
        exposure(key, "sliced", attributes=SLICED),
        exposure(key, "largest", attributes=largest),
        exposure(key, "plain"), exposure(key, "empty", attributes={}), exposure(key, "null", attributes=None),
        exposure(key, "number", attributes={"country": "US", "age": 31}),
        exposure(key, "too-many", attributes={f"a{i}": "v" for i in range(21)}),
        exposure(key, "too-long", attributes={"country": "x" * 257}),
        exposure(key, "bad-name", attributes={"bad name": "x"}),
        exposure(key, "list", attributes=["country", "US"]),
        exposure(key, "nested", attributes={"country": {"code": "US"}}),
    ]  # fmt: skip
    response = ingest.post("/v1/exposures", json={"exposures": items})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["accepted"] == 5
    assert body["rejected"] == [
        {"index": 5, "error": "attribute 'age' must be a string, not int"},
        {"index": 6, "error": "'attributes' has 21 keys; at most 20"},
        {"index": 7, "error": "attribute 'country' is longer than 256 characters"},
        {"index": 8, "error": "attribute name 'bad name' must match ^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"},
        {"index": 9, "error": "'attributes' must be an object of strings"},
        {"index": 10, "error": "attribute 'country' must be a string, not dict"},
    ]

    values = by_unit(broker.bootstrap, key)
    assert sorted(values) == ["empty", "largest", "null", "plain", "sliced"]
    assert values["sliced"]["attributes"] == SLICED and values["largest"]["attributes"] == largest
    for unit in ("plain", "empty", "null"):  # no attributes: the message has no such field
        assert "attributes" not in values[unit], values[unit]


def test_hostile_attributes_never_500(ingest: httpx.Client, broker: TansuBroker, experiment: dict[str, Any]) -> None:
    key = experiment["key"]

    def item(unit: str, attributes: bytes) -> bytes:
        fields = exposure(key, unit)
        return json.dumps(fields)[:-1].encode() + b', "attributes": ' + attributes + b"}"

    hostile = [
        b'{"a": ' + b"[" * 900 + b"]" * 900 + b"}",  # deep nesting inside one value
        b"[" * 900 + b"]" * 900,
        b"{" + b", ".join(b'"k%d": "v"' % i for i in range(100_000)) + b"}",  # 100,000 keys
        b'{"country": "' + b"x" * 1_000_000 + b'"}',  # a 1 MB value
        b'{"country": "\\ud800"}', b'{"\\udfff": "x"}',  # lone surrogates, which UTF-8 cannot carry
        b'{"country": "US", "country": 7}',  # repeated key: the last one counts
        b'{"a": NaN}', b'"US"', b"7", b"true",
    ]  # fmt: skip
    content = b'{"exposures": [' + b", ".join(item(f"hostile-{i}", a) for i, a in enumerate(hostile))
    content += b", " + item("fine", b'{"country": "DE"}') + b"]}"
    response = ingest.post("/v1/exposures", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text[:300]
    body = response.json()
    assert body["accepted"] == 1 and [r["index"] for r in body["rejected"]] == list(range(len(hostile)))
    errors = [r["error"] for r in body["rejected"]]
    assert all(0 < len(e) <= 300 for e in errors) and "x" * 300 not in response.text
    assert errors[2] == "'attributes' has 100000 keys; at most 20"
    assert "lone surrogate" in errors[4] and errors[5].startswith("attribute name")
    assert by_unit(broker.bootstrap, key)["fine"]["attributes"] == {"country": "DE"}


def test_attributes_survive_the_spool(
    redis_server: RedisServer, own_broker: TansuBroker, start_exposure: Callable[..., ServiceProcess],
    experiment: dict[str, Any],
) -> None:  # fmt: skip
    service = start_exposure(redis_server.url, own_broker.bootstrap, ASSAY_KAFKA_PRODUCE_TIMEOUT_MS="800")
    key = experiment["key"]
    with client_for(service.base_url, SDK_KEY) as ingest:
        eventually(lambda: readiness(service.base_url)["ready"], timeout=15, message="the service is not ready")
        own_broker.freeze()  # no acks: the request times out into the spool
        try:
            items = [exposure(key, "spooled", attributes=SLICED), exposure(key, "spooled-plain")]
            response = ingest.post("/v1/exposures", json={"exposures": items})
            assert response.json() == {"accepted": 2, "rejected": []}
            assert readiness(service.base_url)["spool"]["records"] == 2
        finally:
            own_broker.thaw()
        wait_until_drained(service.base_url)
    metrics = httpx.get(f"{service.base_url}/metrics").text
    assert metric_value(metrics, "assay_exposure_items_spooled_total", kind="exposure") == 2
    values = by_unit(own_broker.bootstrap, key)
    assert values["spooled"]["attributes"] == SLICED and "attributes" not in values["spooled-plain"]
    service.stop()
