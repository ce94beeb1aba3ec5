"""Both sides of the Kafka message contract (services.common.envelope): what the exposure
service builds is what the metrics ingest turns into a lake row, field for field."""

from __future__ import annotations

from services.common.envelope import EVENT_FIELDS, EXPOSURE_FIELDS, event_message, exposure_message, message_key
from services.common.topics import EVENTS_TOPIC, EXPOSURES_TOPIC
from services.metrics.records import parse_message

AT, RECEIVED = "2026-11-20T10:00:00.000Z", "2026-11-20T10:00:01.250Z"


def test_an_exposure_message_becomes_an_exposure_row() -> None:
    row = parse_message(EXPOSURES_TOPIC, exposure_message("e1", "checkout-button", "treatment", "u1", AT, RECEIVED))
    assert set(row) == set(EXPOSURE_FIELDS)
    assert (row["experiment"], row["variant"], row["unit_id"]) == ("checkout-button", "treatment", "u1")
    assert row["received_at"].isoformat() == "2026-11-20T10:00:01.250000+00:00"


def test_an_exposure_keeps_its_attributes_and_omits_none() -> None:
    plain = exposure_message("e1", "k", "control", "u1", AT, RECEIVED)
    assert b"attributes" not in plain and parse_message(EXPOSURES_TOPIC, plain)["attributes"] is None
    sliced = exposure_message("e1", "k", "control", "u1", AT, RECEIVED, {"country": "US", "platform": "ios"})
    assert parse_message(EXPOSURES_TOPIC, sliced)["attributes"] == {"country": "US", "platform": "ios"}


def test_an_event_message_becomes_an_event_row() -> None:
    row = parse_message(EVENTS_TOPIC, event_message("e2", "purchase", "u1", AT, 12.5, {"sku": "a"}, RECEIVED))
    assert set(row) == set(EVENT_FIELDS)
    assert (row["name"], row["value"], row["properties"]) == ("purchase", 12.5, '{"sku":"a"}')


def test_messages_are_keyed_by_unit() -> None:
    assert message_key("用户-42") == "用户-42".encode()
