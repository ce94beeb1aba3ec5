"""Request rate limits: a token bucket per API key, and one per client address for requests
without a valid key (so guessing keys is throttled too).

Buckets live in the process: the limits hold per service instance, not across replicas.
That keeps the check on the request path to a dictionary lookup and some arithmetic: no
Redis round trip, no lock (the event loop runs one check at a time and a check never awaits).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter

from services.common.auth import Principal

Clock = Callable[[], float]
Identify = Callable[[str], Principal | None]
Kind = Literal["key", "anonymous"]
MAX_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Limit:
    """`per_second` requests on average with bursts of up to `burst`; 0 per second is no limit."""

    per_second: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.per_second > 0


@dataclass(frozen=True, slots=True)
class RateLimits:
    per_key: Limit
    anonymous: Limit


class TokenBucket:
    """Holds up to `capacity` tokens, refilled at `rate` per second; a request takes one."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float) -> float:
        """0.0 if a token was taken; otherwise the seconds until one will be there."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


class BucketTable:
    """One bucket per name under one limit, at most `max_buckets` of them.

    When the table is full, buckets that have refilled completely are forgotten (forgetting
    them changes nothing); if none has, the oldest is, which at worst grants its owner a
    fresh burst."""

    def __init__(self, limit: Limit, clock: Clock, max_buckets: int = MAX_BUCKETS) -> None:
        self.limit = limit
        self.clock = clock
        self.max_buckets = max_buckets
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, name: str) -> float:
        now = self.clock()
        bucket = self.buckets.get(name)
        if bucket is None:
            if len(self.buckets) >= self.max_buckets:
                self._make_room(now)
            bucket = self.buckets[name] = TokenBucket(self.limit.per_second, self.limit.burst, now)
        return bucket.take(now)

    def _make_room(self, now: float) -> None:
        for name in [name for name, bucket in self.buckets.items() if bucket.is_full(now)]:
            del self.buckets[name]
        while len(self.buckets) >= self.max_buckets:
            del self.buckets[next(iter(self.buckets))]


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: Kind
    retry_after: int  # whole seconds, at least 1 (the Retry-After header)

    @property
    def message(self) -> str:
        who = "this API key" if self.kind == "key" else "requests without a valid API key from this address"
        return f"rate limit exceeded for {who}; retry after {self.retry_after} s"


class RateLimiter:
    """Decides whether a request may go on, from its bearer token and client address."""

    def __init__(
        self, limits: RateLimits, identify: Identify, registry: CollectorRegistry,
        clock: Clock = time.monotonic, max_buckets: int = MAX_BUCKETS,
    ) -> None:  # fmt: skip
        self.identify = identify
        self.tables: dict[Kind, BucketTable | None] = {
            "key": BucketTable(limits.per_key, clock, max_buckets) if limits.per_key.enabled else None,
            "anonymous": BucketTable(limits.anonymous, clock, max_buckets) if limits.anonymous.enabled else None,
        }
        refused = Counter("assay_rate_limited_total", "requests refused with 429 by the rate limiter", ["kind"],
                          registry=registry)  # fmt: skip
        self.refused = {kind: refused.labels(kind) for kind in self.tables}

    @property
    def enabled(self) -> bool:
        return any(table is not None for table in self.tables.values())

    def check(self, token: str | None, client: str | None) -> Refusal | None:
        """None if the request may go on. A known key draws on its own bucket (by fingerprint,
        never the key); anything else draws on its client address's bucket."""
        return self.check_principal(self.identify(token) if token else None, client)

    def check_principal(self, principal: Principal | None, client: str | None) -> Refusal | None:
        """`check` for a caller already identified (None: no valid key)."""
        kind: Kind = "key" if principal is not None else "anonymous"
        table = self.tables[kind]
        if table is None:
            return None
        wait = table.take(principal.key_id if principal is not None else client or "unknown")
        if wait <= 0.0:
            return None
        self.refused[kind].inc()
        return Refusal(kind, max(1, math.ceil(wait)))
