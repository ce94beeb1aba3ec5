"""Item validation: timestamps in both forms, the time window, NaN, control characters,
property limits, the registry check, and the JSON envelope."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from assay.models import ExperimentConfig
from assay.timefmt import format_rfc3339
from fastapi import HTTPException

from services.exposure.envelope import items_of, parse_json
from services.exposure.timestamps import TimestampError, TimeWindow, parse_timestamp
from services.exposure.validation import ItemContext, RegistryIndex, validate_items

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
WINDOW = TimeWindow.at(NOW, max_future_seconds=300, horizon_days=30)


def config(key: str, status: str = "running") -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "key": key, "salt": key, "status": status,
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
    })  # fmt: skip


CONTEXT = ItemContext(WINDOW, "2026-11-20T12:00:00.000Z", RegistryIndex({
    "live": config("live"), "paused-exp": config("paused-exp", "paused"), "done": config("done", "stopped"),
    "draft-exp": config("draft-exp", "draft"), "old": config("old", "archived"),
}))  # fmt: skip


def exposure(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"event_id": "e-1", "experiment": "live", "variant": "control", "unit_id": "u1",
                            "timestamp": NOW_MS}  # fmt: skip
    item.update(fields)
    return item


def event(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": "purchase", "unit_id": "u1", "timestamp": NOW_MS}
    item.update(fields)
    return item


def one_error(kind: str, item: Any) -> str:
    outcome = validate_items(kind, [item], CONTEXT)  # type: ignore[arg-type]
    assert not outcome.entries and len(outcome.rejected) == 1, outcome
    return outcome.rejected[0].error


def accepted_value(kind: str, item: dict[str, Any]) -> dict[str, Any]:
    outcome = validate_items(kind, [item], CONTEXT)  # type: ignore[arg-type]
    assert outcome.rejected == [], outcome.rejected
    return dict(orjson.loads(outcome.entries[0].value))


@pytest.mark.parametrize(
    ("given", "expected"),
    [("2026-11-20T10:00:00Z", "2026-11-20T10:00:00.000Z"),
     ("2026-11-20t10:00:00.5z", "2026-11-20T10:00:00.500Z"),
     ("2026-11-20T12:00:00.123456789+02:00", "2026-11-20T10:00:00.123Z"),
     ("2026-11-20 05:30:00-04:30", "2026-11-20T10:00:00.000Z"), (1795168800123, "2026-11-20T10:00:00.123Z"),
     (1795168800000.0, "2026-11-20T10:00:00.000Z")],
)  # fmt: skip
def test_timestamps_in_both_forms(given: object, expected: str) -> None:
    assert format_rfc3339(parse_timestamp(given)) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [("2026-11-20T10:00:00", "offset is required"), ("2026-11-20", "not RFC 3339"),
     ("2026-02-30T10:00:00Z", "not a real date"), ("2026-11-20T10:00:60Z", "not a real date"),
     ("yesterday", "not RFC 3339"), ("2026-11-20T10:00:00Z" + " " * 50, "not RFC 3339"),
     (True, "not a boolean"), (None, "not NoneType"), ([1], "not list"), (1.5, "whole numbers"),
     (math.nan, "finite"), (math.inf, "finite"), (10**30, "years 1-9999"), (-(10**20), "years 1-9999"),
     ("0001-01-01T00:00:00+01:00", "years 1-9999")],
)  # fmt: skip
def test_bad_timestamps(given: object, message: str) -> None:
    with pytest.raises(TimestampError, match=message):
        parse_timestamp(given)


def test_time_window_limits() -> None:
    WINDOW.check(NOW + timedelta(seconds=300))
    WINDOW.check(NOW - timedelta(days=30))
    with pytest.raises(TimestampError, match="301 s ahead of server time"):
        WINDOW.check(NOW + timedelta(seconds=301))
    with pytest.raises(TimestampError, match=r"older than the 30-day horizon$"):
        WINDOW.check(NOW - timedelta(days=30, seconds=1))
    seconds_not_ms = parse_timestamp(NOW_MS // 1000)
    with pytest.raises(TimestampError, match="in milliseconds, not seconds"):
        WINDOW.check(seconds_not_ms)


def test_window_is_applied_to_items() -> None:
    assert "ahead of server time" in one_error("exposure", exposure(timestamp=NOW_MS + 301_000))
    assert "older than the 30-day horizon" in one_error("event", event(timestamp="2026-10-01T00:00:00Z"))
    assert accepted_value("exposure", exposure(timestamp=NOW_MS + 299_000))["timestamp"] == ("2026-11-20T12:04:59.000Z")


def test_accepted_exposure_value_and_generated_id() -> None:
    value = accepted_value("exposure", exposure(event_id=None, timestamp="2026-11-20T11:00:00+00:00"))
    assert value.pop("event_id") and value == {
        "experiment": "live", "variant": "control", "unit_id": "u1",
        "timestamp": "2026-11-20T11:00:00.000Z", "received_at": "2026-11-20T12:00:00.000Z",
    }  # fmt: skip
    entry = validate_items("exposure", [exposure(unit_id="用户")], CONTEXT).entries[0]
    assert entry.topic == "assay.exposures" and entry.key == "用户".encode()


def test_registry_rules() -> None:
    for key in ("live", "paused-exp", "done"):
        accepted_value("exposure", exposure(experiment=key))
    assert one_error("exposure", exposure(experiment="nope")) == "unknown experiment 'nope'"
    assert one_error("exposure", exposure(variant="x")) == "unknown variant 'x' for experiment 'live'"
    assert one_error("exposure", exposure(experiment="draft-exp")).startswith("experiment 'draft-exp' is draft")
    assert one_error("exposure", exposure(experiment="old")).startswith("experiment 'old' is archived")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected_per_item(value: float) -> None:
    assert one_error("event", event(value=value)) == "value: Input should be a finite number"
    assert "finite numbers" in one_error("event", event(properties={"x": [value]}))


@pytest.mark.parametrize("field", ["unit_id", "event_id"])
@pytest.mark.parametrize("text", ["a\x00b", "tab\there", "new\nline", "del\x7f"])
def test_control_characters_in_ids(field: str, text: str) -> None:
    error = one_error("exposure", exposure(**{field: text}))
    assert error.startswith(f"{field}: must not contain control characters")


def test_lone_surrogates_cannot_reach_the_broker() -> None:
    assert one_error("exposure", exposure(unit_id="\ud800")).startswith("unit_id: Input should be a valid string")
    assert "cannot be stored" in one_error("event", event(properties={"note": "\udfff"}))


@pytest.mark.parametrize(
    ("item", "message"),
    [(exposure(unit_id=""), "unit_id: String should have at least 1 character"),
     (exposure(unit_id="u" * 257), "unit_id: String should have at most 256 characters"),
     (exposure(event_id="e" * 129), "event_id: String should have at most 128 characters"),
     (exposure(unit_id=42), "unit_id: Input should be a valid string"),
     (exposure(experiment="Bad Key"), "experiment: String should match pattern"),
     (exposure(extra=1), "unknown field 'extra'"), (exposure(**{"x" * 500: 1}), "unknown field 'xxxxx"),
     ({"experiment": "live"}, "is required"), ([], "each item must be a JSON object, not list"),
     (event(value="12.5"), "value: Input should be a valid number"), (event(value=True), "valid number"),
     (event(name="bad name"), "name: String should match pattern"),
     (event(properties=[]), "properties: Input should be a valid dictionary"),
     (event(properties={f"k{i}": i for i in range(65)}), "65 properties; at most 64"),
     (event(properties={"blob": "x" * 9000}), "at most 8192 are allowed"),
     (event(properties={"a": {"b": {"c": {}}}}), "nest at most 3 levels"),
     (event(properties={"a": [[[1]]]}), "nest at most 3 levels"),
     (event(properties={"a": list(range(600))}), "more than 512 values"),
     (event(properties={"": 1}), "1 to 128 characters"),
     (event(properties={"k\x01": 1}), "control characters"),
     (event(properties={"x": 2**70}), "cannot be stored")],
)  # fmt: skip
def test_wrong_shapes_and_limits(item: Any, message: str) -> None:
    kind = "event" if isinstance(item, dict) and "name" in item else "exposure"
    assert message in one_error(kind, item)


def test_one_bad_item_never_rejects_the_others() -> None:
    items: list[Any] = [exposure(unit_id=f"u{i}") for i in range(5)]
    items[1]["variant"], items[3] = "zzz", "junk"
    outcome = validate_items("exposure", items, CONTEXT)
    assert [r.index for r in outcome.rejected] == [1, 3]
    assert [r.reason for r in outcome.rejected] == ["unknown_variant", "malformed"]
    assert [e.key for e in outcome.entries] == [b"u0", b"u2", b"u4"]


def test_json_parsing_keeps_nan_items_apart() -> None:
    payload = parse_json(b'{"events": [{"value": NaN}, {"value": -Infinity}, {"value": 1}]}')
    values = [item["value"] for item in payload["events"]]
    assert math.isnan(values[0]) and values[1] == -math.inf and values[2] == 1
    for body in (b"{", b"", b"\xff\xfe", b'{"a": 1} trailing', b"[" * 100_000 + b"]" * 100_000):
        with pytest.raises(HTTPException) as raised:
            parse_json(body)
        assert raised.value.status_code == 422 and "not valid JSON" in raised.value.detail


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [([], 422, "must be a JSON object"), ({}, 422, "'exposures' is required"),
     ({"exposures": {}}, 422, "must be a list"), ({"events": []}, 422, "unknown field 'events'"),
     ({"exposures": [{}] * 1001}, 413, "1001 exposures in one request; send at most 1000")],
)  # fmt: skip
def test_envelope_problems_reject_the_request(payload: Any, status: int, message: str) -> None:
    with pytest.raises(HTTPException) as raised:
        items_of(payload, "exposure", 1000)
    assert raised.value.status_code == status and message in raised.value.detail


def test_attributes_travel_in_the_message() -> None:
    value = accepted_value("exposure", exposure(attributes={"country": "US", "os.version": "17.1", "_tier": ""}))
    assert value["attributes"] == {"country": "US", "os.version": "17.1", "_tier": ""}
    for nothing in ({}, None):  # no attributes: the message keeps its old bytes
        assert "attributes" not in accepted_value("exposure", exposure(attributes=nothing))
    most = {f"a{i}": "v" * 256 for i in range(20)}
    assert accepted_value("exposure", exposure(attributes=most))["attributes"] == most


@pytest.mark.parametrize(
    ("attributes", "message"),
    [("US", "'attributes' must be an object of strings"), (["country"], "'attributes' must be an object of strings"),
     ({f"a{i}": "v" for i in range(21)}, "'attributes' has 21 keys; at most 20"),
     ({f"a{i}": "v" for i in range(100_000)}, "'attributes' has 100000 keys; at most 20"),
     ({"country": 1}, "attribute 'country' must be a string, not int"),
     ({"beta": True}, "attribute 'beta' must be a string, not bool"),
     ({"country": None}, "attribute 'country' must be a string, not NoneType"),
     ({"a": {"b": {"c": {"d": [1, [2, [3]]]}}}}, "attribute 'a' must be a string, not dict"),
     ({"country": "x" * 257}, "attribute 'country' is longer than 256 characters"),
     ({"bad name": "x"}, "attribute name 'bad name' must match"), ({"": "x"}, "attribute name '' must match"),
     ({"9lives": "x"}, "attribute name '9lives' must match"), ({"n" * 65: "x"}, "attribute name 'nnnn"),
     ({"country": "\ud800"}, "attribute 'country' is not valid UTF-8 text (a lone surrogate)")],
)  # fmt: skip
def test_bad_attributes_reject_only_their_item(attributes: object, message: str) -> None:
    outcome = validate_items("exposure", [exposure(unit_id="good"), exposure(attributes=attributes)], CONTEXT)
    assert [e.key for e in outcome.entries] == [b"good"]
    [rejected] = outcome.rejected
    assert rejected.index == 1 and rejected.reason == "attributes" and rejected.error.startswith(message)
    assert len(rejected.error) <= 300


def test_attribute_problems_come_after_the_other_fields() -> None:
    error = one_error("exposure", exposure(unit_id="", attributes={"a": 1}))
    assert error == "unit_id: String should have at least 1 character (and 1 more problem)"
