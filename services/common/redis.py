"""Redis connection helpers."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError


def connect(url: str, timeout_ms: int, *, max_connections: int = 64) -> aioredis.Redis:
    """An async client with short timeouts, so a caller notices a missing Redis within
    `timeout_ms` and can degrade instead of hanging. A broken connection is retried once,
    at once: after Redis restarts, pooled sockets are stale and the retry reconnects. A
    timeout is never retried (that would double the wait)."""
    timeout = timeout_ms / 1000
    return aioredis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
        retry_on_timeout=False,
        health_check_interval=30,
        decode_responses=True,
        max_connections=max_connections,
    )


async def reachable(redis: aioredis.Redis) -> bool:
    """True when Redis answers a PING now (for /readyz)."""
    try:
        await redis.ping()
    except (RedisError, OSError):
        return False
    return True
