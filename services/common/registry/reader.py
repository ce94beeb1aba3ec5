"""Reading experiments from the registry: the one way every service turns the Redis hash of
experiment documents into `ExperimentPublic`. Writes belong to the assignment service alone."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
from pydantic import ValidationError

from services.common.registry import keys
from services.common.registry.errors import not_found
from services.common.registry.models import ExperimentPublic, parse_docs

log = logging.getLogger("assay.registry")


class RegistryReader:
    """Async reads for request handlers (the scorecard service; the assignment service's
    `Registry` extends it with the write path)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def list_experiments(self) -> list[ExperimentPublic]:
        docs = parse_docs(await self.redis.hgetall(keys.EXPERIMENTS))
        return sorted(docs.values(), key=lambda doc: doc.created_at)

    async def get_experiment(self, key: str) -> ExperimentPublic:
        raw = await self.redis.hget(keys.EXPERIMENTS, key)
        if raw is None:
            raise not_found(key)
        return ExperimentPublic.model_validate_json(raw)


def running_documents(documents: Mapping[Any, Any]) -> list[ExperimentPublic]:
    """The running experiments among raw registry documents, by key. A batch job must not stop
    on one unreadable document, so those are logged and skipped."""
    running = []
    for key, raw in sorted(documents.items(), key=lambda item: str(item[0])):
        try:
            doc = ExperimentPublic.model_validate_json(raw)
        except (ValidationError, ValueError, TypeError) as exc:
            log.warning("skipping an unreadable experiment document", extra={"experiment": key, "error": repr(exc)})
            continue
        if doc.status == "running":
            running.append(doc)
    return running


def _sync_client(redis_url: str, timeout_ms: int) -> redis.Redis:
    return redis.Redis.from_url(
        redis_url,
        socket_timeout=timeout_ms / 1000,
        socket_connect_timeout=timeout_ms / 1000,
        decode_responses=True,
    )


def read_running_experiments(redis_url: str, timeout_ms: int = 2000) -> list[ExperimentPublic]:
    """Synchronous read for batch jobs (the metrics job's `run --all-running`)."""
    client = _sync_client(redis_url, timeout_ms)
    try:
        documents = client.hgetall(keys.EXPERIMENTS)
    finally:
        client.close()
    return running_documents(documents)


def read_experiments(redis_url: str, names: Sequence[str], timeout_ms: int = 2000) -> dict[str, ExperimentPublic]:
    """Synchronous read of these experiments, whatever their status (the metrics job's
    `run --experiments`); missing or unreadable ones are left out. Raises redis errors."""
    if not names:
        return {}
    client = _sync_client(redis_url, timeout_ms)
    try:
        documents = client.hmget(keys.EXPERIMENTS, list(names))
    finally:
        client.close()
    found = {}
    for name, raw in zip(names, documents, strict=True):
        if raw is None:
            continue
        try:
            found[name] = ExperimentPublic.model_validate_json(raw)
        except (ValidationError, ValueError, TypeError) as exc:
            log.warning("skipping an unreadable experiment document", extra={"experiment": name, "error": repr(exc)})
    return found
