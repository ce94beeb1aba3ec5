"""Read-only view of the experiment registry in Redis (for `run --all-running`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import redis

from services.assignment.keys import EXPERIMENTS
from services.metrics.job.run import ExperimentSpec

log = logging.getLogger("services.metrics.job")
METRIC_ROLES = ("primary", "secondary", "guardrails")


def spec_from_document(raw: str | bytes) -> ExperimentSpec:
    """An experiment document (DESIGN.md) -> what to compute: its variants in order and its
    metrics (all catalog metrics when it names none)."""
    doc = json.loads(raw)
    variants = tuple(variant["key"] for variant in doc.get("variants") or [])
    named = [name for role in METRIC_ROLES for name in (doc.get("metrics") or {}).get(role) or []]
    return ExperimentSpec(key=doc["key"], variants=variants, metrics=tuple(dict.fromkeys(named)) or None)


def running_specs(documents: Mapping[str, str] | Mapping[bytes | str, bytes | str]) -> list[ExperimentSpec]:
    """Specs of the running experiments among registry documents; unreadable ones are skipped."""
    specs = []
    for key, raw in sorted(documents.items(), key=lambda item: str(item[0])):
        try:
            if json.loads(raw).get("status") == "running":
                specs.append(spec_from_document(raw))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning(
                "skipping an unreadable experiment document", extra={"experiment": key, "error": repr(exc)}
            )
    return specs


def running_experiments(redis_url: str, timeout_ms: int = 2000) -> list[ExperimentSpec]:
    client = redis.Redis.from_url(
        redis_url,
        socket_timeout=timeout_ms / 1000,
        socket_connect_timeout=timeout_ms / 1000,
        decode_responses=True,
    )
    try:
        documents = client.hgetall(EXPERIMENTS)
    finally:
        client.close()
    return running_specs(documents)
