"""Token buckets and the rate limiter on an injected clock: no sleeping."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.common.auth import KeyRing
from services.common.ratelimit import BucketTable, Limit, RateLimiter, RateLimits, TokenBucket
from services.common.settings import ServiceSettings

ADMIN, SDK = "admin-key-0123456789", "sdk-key-0123456789"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, capacity=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token comes back after 1/rate seconds
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) > 0


def test_bucket_never_holds_more_than_its_capacity() -> None:
    bucket = TokenBucket(rate=100.0, capacity=2, now=0.0)
    assert bucket.take(3600.0) == 0.0 and bucket.take(3600.0) == 0.0
    assert bucket.take(3600.0) > 0
    assert bucket.is_full(3601.0)


def test_a_clock_going_backwards_grants_nothing() -> None:
    bucket = TokenBucket(rate=1.0, capacity=1, now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) > 0 and bucket.take(10.5) == pytest.approx(0.5)


def test_table_forgets_refilled_buckets_first_and_stays_bounded() -> None:
    clock = FakeClock()
    table = BucketTable(Limit(1.0, 1), clock, max_buckets=3)
    for name in ("a", "b", "c"):
        assert table.take(name) == 0.0
    clock.now += 10  # every bucket has refilled: forgetting them loses nothing
    assert table.take("a") == 0.0  # "a" is drained again
    assert table.take("d") == 0.0
    assert set(table.buckets) == {"a", "d"}
    assert table.take("a") > 0  # "a" was kept with its state
    for name in ("e", "f", "g"):
        table.take(name)
    assert len(table.buckets) <= 3


def limiter(clock: FakeClock, per_key: Limit, anonymous: Limit) -> tuple[RateLimiter, CollectorRegistry]:
    registry = CollectorRegistry()
    keyring = KeyRing([ADMIN], [SDK])
    return RateLimiter(RateLimits(per_key, anonymous), keyring.identify, registry, clock=clock), registry


def test_each_key_has_its_own_bucket_and_retry_after_is_whole_seconds() -> None:
    clock = FakeClock()
    rate_limiter, registry = limiter(clock, Limit(0.5, 2), Limit(0, 1))
    assert rate_limiter.check(SDK, "10.0.0.1") is None and rate_limiter.check(SDK, "10.0.0.2") is None
    refusal = rate_limiter.check(SDK, "10.0.0.3")
    assert refusal is not None and refusal.kind == "key" and refusal.retry_after == 2
    assert "this API key" in refusal.message and SDK not in refusal.message
    assert rate_limiter.check(ADMIN, "10.0.0.1") is None  # another key: its own bucket
    assert registry.get_sample_value("assay_rate_limited_total", {"kind": "key"}) == 1
    clock.now += 2
    assert rate_limiter.check(SDK, "10.0.0.1") is None


def test_retry_after_is_at_least_one_second() -> None:
    clock = FakeClock()
    rate_limiter, _ = limiter(clock, Limit(1000.0, 1), Limit(0, 1))
    assert rate_limiter.check(SDK, None) is None
    refusal = rate_limiter.check(SDK, None)
    assert refusal is not None and refusal.retry_after == 1


def test_requests_without_a_valid_key_share_their_address_bucket() -> None:
    clock = FakeClock()
    rate_limiter, registry = limiter(clock, Limit(0, 1), Limit(1.0, 2))
    # Guessing: every wrong key from one address draws on the same bucket.
    assert rate_limiter.check(None, "10.0.0.9") is None
    assert rate_limiter.check("guess-1", "10.0.0.9") is None
    refusal = rate_limiter.check("guess-2", "10.0.0.9")
    assert refusal is not None and refusal.kind == "anonymous" and refusal.retry_after == 1
    assert rate_limiter.check("guess-3", "10.0.0.10") is None  # another address
    assert rate_limiter.check(SDK, "10.0.0.9") is None  # a valid key is not held back (per-key limit off)
    assert registry.get_sample_value("assay_rate_limited_total", {"kind": "anonymous"}) == 1


def test_zero_turns_limits_off() -> None:
    rate_limiter, _ = limiter(FakeClock(), Limit(0, 1), Limit(0, 1))
    assert not rate_limiter.enabled
    assert all(rate_limiter.check(key, "10.0.0.1") is None for key in [SDK, None, "x"] * 1000)


def test_settings_defaults_leave_room_for_benchmark_traffic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_ENV", "dev")
    limits = ServiceSettings().rate_limits
    assert limits.per_key.per_second >= 10_000 and limits.per_key.burst >= limits.per_key.per_second
    assert 0 < limits.anonymous.per_second <= 1000
    monkeypatch.setenv("ASSAY_RATE_LIMIT_PER_SECOND", "0")
    monkeypatch.setenv("ASSAY_RATE_LIMIT_ANONYMOUS_BURST", "7")
    limits = ServiceSettings().rate_limits
    assert not limits.per_key.enabled and limits.anonymous.burst == 7
