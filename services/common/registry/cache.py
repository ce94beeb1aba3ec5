"""In-process cache of every experiment's evaluation config.

`/v1/assign` and the exposure service's checks read only this snapshot. It is reloaded when a
registry write publishes a new config version (Redis pub/sub), checked at least every `refresh_seconds` as a safety net
for missed messages, and reloaded at once by the process that made the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field

import orjson
import redis.asyncio as aioredis
from assay.bucketing import BUCKETING_VERSION, BUCKETS
from assay.models import ExperimentConfig
from redis.exceptions import RedisError

from services.common.registry import keys
from services.common.registry.models import parse_docs

log = logging.getLogger("assay.assignment.cache")
OVERRIDE_STATUSES = frozenset({"running", "paused"})


@dataclass(frozen=True)
class ConfigSnapshot:
    version: int
    experiments: dict[str, ExperimentConfig] = field(default_factory=dict)
    running: tuple[str, ...] = ()
    body: bytes = b""
    etag: str = ""


def build_snapshot(version: int, docs_raw: dict[str, str], overrides: dict[str, dict[str, str]]) -> ConfigSnapshot:
    """Evaluation configs of every experiment, and the `/v1/config` body (running ones only)
    with its ETag, computed once per config version rather than per request."""
    experiments: dict[str, ExperimentConfig] = {}
    for key, doc in parse_docs(docs_raw).items():
        fields = doc.model_dump(include=set(ExperimentConfig.model_fields))
        fields["overrides"] = overrides.get(key, {})
        experiments[key] = ExperimentConfig.model_validate(fields)
    running = tuple(sorted(k for k, c in experiments.items() if c.status == "running"))
    body = orjson.dumps({
        "version": version, "bucketing_version": BUCKETING_VERSION, "buckets": BUCKETS,
        "experiments": [experiments[k].model_dump(mode="json") for k in running],
    })  # fmt: skip
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return ConfigSnapshot(version, experiments, running, body, etag)


class ConfigCache:
    """The latest `ConfigSnapshot`; readers never wait on Redis, refreshes replace it whole."""

    def __init__(self, redis: aioredis.Redis, *, refresh_seconds: float) -> None:
        self.redis = redis
        self.refresh_seconds = refresh_seconds
        self.snapshot = build_snapshot(-1, {}, {})
        self.loaded = False
        self._lock = asyncio.Lock()

    async def reload(self) -> ConfigSnapshot:
        async with self._lock:
            version = int(await self.redis.get(keys.CONFIG_VERSION) or 0)
            docs_raw = {str(k): str(v) for k, v in (await self.redis.hgetall(keys.EXPERIMENTS)).items()}
            statuses = {k: orjson.loads(v).get("status") for k, v in docs_raw.items()}
            live = [k for k, s in statuses.items() if s in OVERRIDE_STATUSES]
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in live:
                    pipe.hgetall(keys.overrides_key(key))
                override_maps = await pipe.execute() if live else []
            self.snapshot = build_snapshot(version, docs_raw, dict(zip(live, override_maps, strict=True)))
            self.loaded = True
            return self.snapshot

    async def reload_if_changed(self) -> None:
        version = int(await self.redis.get(keys.CONFIG_VERSION) or 0)
        if version != self.snapshot.version or not self.loaded:
            await self.reload()

    async def run_refresher(self) -> None:
        """Forever: wait for a change message (or the refresh interval), then reload if the
        version moved. Survives Redis outages by retrying."""
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.CONFIG_CHANNEL)
                await self.reload_if_changed()
                while True:
                    await pubsub.get_message(timeout=self.refresh_seconds)
                    await self.reload_if_changed()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("config refresh failed; serving the cached config", extra={"error": str(exc)})
                await asyncio.sleep(self.refresh_seconds)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
