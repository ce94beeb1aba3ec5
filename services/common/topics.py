"""Kafka topic names (docs/api.md "Exposure service"): the exposure service produces to them,
the metrics ingest consumes them and names lake directories after them, so they are spelled
once, here."""

from __future__ import annotations

from typing import Literal

Kind = Literal["exposure", "event"]
KINDS: tuple[Kind, ...] = ("exposure", "event")

EXPOSURES_TOPIC = "assay.exposures"
EVENTS_TOPIC = "assay.events"
TOPICS = (EXPOSURES_TOPIC, EVENTS_TOPIC)
TOPIC_OF_KIND: dict[Kind, str] = {"exposure": EXPOSURES_TOPIC, "event": EVENTS_TOPIC}
KIND_OF_TOPIC: dict[str, Kind] = {topic: kind for kind, topic in TOPIC_OF_KIND.items()}
