"""Kafka values -> lake rows; anything unusable raises Malformed with the reason."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from services.common.topics import EVENTS_TOPIC, EXPOSURES_TOPIC
from services.metrics.records import Malformed, parse_message

EXPOSURE = {
    "event_id": "e1", "experiment": "checkout-button", "variant": "treatment", "unit_id": "u1",
    "timestamp": "2026-11-20T10:00:00.123Z", "received_at": "2026-11-20T10:00:01Z",
}  # fmt: skip
EVENT = {
    "event_id": "e2", "name": "purchase", "unit_id": "u1", "timestamp": "2026-11-20T12:05:00+02:00",
    "value": 12.5, "properties": {"b": 1, "a": "x"}, "received_at": "2026-11-20T10:06:00Z",
}  # fmt: skip


def test_exposure_row() -> None:
    row = parse_message(EXPOSURES_TOPIC, orjson.dumps({**EXPOSURE, "extra": "ignored"}))
    assert row == {
        "event_id": "e1", "unit_id": "u1", "experiment": "checkout-button", "variant": "treatment",
        "timestamp": datetime(2026, 11, 20, 10, 0, 0, 123000, tzinfo=UTC),
        "received_at": datetime(2026, 11, 20, 10, 0, 1, tzinfo=UTC), "attributes": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [("US", "object of strings"), ({"country": 1}, "must be a string"), ({"bad name": "x"}, "must match"),
     ({f"a{i}": "x" for i in range(21)}, "at most 20"), ({"country": "x" * 257}, "longer than 256"),
     ({"country\n": "x"}, "must match")],
)  # fmt: skip
def test_exposure_attributes_out_of_bounds_are_quarantined(attributes: object, reason: str) -> None:
    with pytest.raises(Malformed, match=reason):
        parse_message(EXPOSURES_TOPIC, orjson.dumps({**EXPOSURE, "attributes": attributes}))


def test_an_attribute_with_a_lone_surrogate_is_quarantined() -> None:
    value = orjson.dumps(EXPOSURE)[:-1] + b', "attributes": {"country": "\\ud800"}}'
    with pytest.raises(Malformed, match="surrogate"):  # orjson refuses it before our check does
        parse_message(EXPOSURES_TOPIC, value)


def test_event_row_normalises_offsets_to_utc_and_keeps_properties_as_json() -> None:
    row = parse_message(EVENTS_TOPIC, orjson.dumps(EVENT))
    assert row["timestamp"] == datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
    assert row["value"] == 12.5 and row["name"] == "purchase"
    assert row["properties"] == '{"a":"x","b":1}'


def test_epoch_milliseconds_and_null_value_are_accepted() -> None:
    row = parse_message(EVENTS_TOPIC, orjson.dumps({**EVENT, "timestamp": 1_700_000_000_000, "value": None}))
    assert row["timestamp"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert row["value"] is None


@pytest.mark.parametrize(
    ("topic", "value", "reason"),
    [
        (EVENTS_TOPIC, None, "empty message value"),
        (EVENTS_TOPIC, b"{not json", "value is not JSON"),
        (EVENTS_TOPIC, b"[1, 2]", "value must be a JSON object"),
        (EVENTS_TOPIC, orjson.dumps({**EVENT, "event_id": ""}), "'event_id' must be a non-empty string"),
        (EVENTS_TOPIC, orjson.dumps({k: v for k, v in EVENT.items() if k != "unit_id"}), "'unit_id' must be"),
        (EVENTS_TOPIC, orjson.dumps({**EVENT, "timestamp": "yesterday"}), "'timestamp' is not RFC 3339"),
        (EVENTS_TOPIC, orjson.dumps({**EVENT, "timestamp": "2026-11-20T10:00:00"}), "has no UTC offset"),
        (EVENTS_TOPIC, orjson.dumps({k: v for k, v in EVENT.items() if k != "received_at"}), "'received_at'"),
        (EVENTS_TOPIC, orjson.dumps({**EVENT, "value": True}), "'value' must be a number or null"),
        (EVENTS_TOPIC, orjson.dumps({**EVENT, "value": "12"}), "'value' must be a number or null"),
        (EVENTS_TOPIC, orjson.dumps({**EVENT, "value": 1e15}), "'value' must be finite and below"),
        (EVENTS_TOPIC, orjson.dumps({**EVENT, "properties": [1]}), "'properties' must be an object"),
        (
            EXPOSURES_TOPIC,
            orjson.dumps({**EXPOSURE, "experiment": "../../etc"}),
            "not a valid experiment key",
        ),
        (EXPOSURES_TOPIC, orjson.dumps({**EXPOSURE, "variant": 3}), "'variant' must be a non-empty string"),
        ("assay.other", orjson.dumps(EVENT), "unexpected topic"),
    ],
)
def test_malformed_messages(topic: str, value: bytes | None, reason: str) -> None:
    with pytest.raises(Malformed, match=reason.replace("(", r"\(").replace("'", "'")):
        parse_message(topic, value)
