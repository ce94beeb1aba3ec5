"""Redis connection helpers."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def connect(url: str, timeout_ms: int, *, max_connections: int = 64) -> aioredis.Redis:
    """An async client with short timeouts and no hidden retries, so a caller notices a
    missing Redis within `timeout_ms` and can degrade instead of hanging."""
    timeout = timeout_ms / 1000
    return aioredis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=30,
        decode_responses=True,
        max_connections=max_connections,
    )
