"""Change control of metric definitions: each definition hash is recorded in Redis the first
time the platform sees it, so a metric's page can list every version with when it was first used.

One Redis hash per metric (`{assay}:metric-definitions:<name>`): field = definition hash, value =
`{"first_seen": "<RFC 3339>", "definition": {...}}`. HSETNX keeps the first sighting; the
scorecard service records the catalog it loaded at start-up and on every catalog read, so a
changed definition appears with the time the service first ran with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from services.common.catalog import MetricDefinition

KEY_PREFIX = "{assay}:metric-definitions:"


def definitions_key(metric: str) -> str:
    return f"{KEY_PREFIX}{metric}"


class DefinitionVersion(BaseModel):
    definition_hash: str
    first_seen: str = Field(description="when the platform first saw this definition (RFC 3339 UTC)")
    definition: dict[str, object] = Field(description="the fields that change the numbers")


class DefinitionHistory:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def record(self, metrics: Sequence[MetricDefinition], now: str) -> None:
        """Note each definition's hash unless it was seen before (one round trip)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for metric in metrics:
                entry = {"first_seen": now, "definition": metric.definition()}
                pipe.hsetnx(definitions_key(metric.name), metric.definition_hash, json.dumps(entry))
            await pipe.execute()

    async def versions(self, metric: str) -> list[DefinitionVersion]:
        """Every recorded version, oldest first."""
        raw = await self.redis.hgetall(definitions_key(metric))
        versions = [
            DefinitionVersion(definition_hash=str(digest), **json.loads(value)) for digest, value in raw.items()
        ]
        return sorted(versions, key=lambda version: (version.first_seen, version.definition_hash))
