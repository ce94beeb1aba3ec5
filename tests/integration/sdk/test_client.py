"""The Python SDK against the real assignment service (remote and local mode) and a
recording HTTP server for delivery behaviour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import assay
import httpx
import pytest
import redis

from deploy.embedded import RedisServer, free_port
from deploy.processes import ServiceProcess
from tests.integration.sdk.recording_server import recording_server
from tests.support.services import SDK_KEY, create_running

GOLDEN = json.loads((Path(__file__).parents[2] / "golden" / "bucketing.json").read_text())
FAST_RETRY = assay.RetryPolicy(max_attempts=6, base_seconds=0.01, max_seconds=0.05)


def client(assignment: ServiceProcess, exposure_url: str, **options: Any) -> assay.Client:
    return assay.Client(SDK_KEY, assignment.base_url, exposure_url, flush_interval=0.05, retry=FAST_RETRY, **options)


def test_remote_get_variant_logs_each_exposure_once(assignment: ServiceProcess, admin: httpx.Client) -> None:
    key = create_running(admin)["key"]
    with recording_server() as (url, recorder), client(assignment, url) as sdk:
        variants = {sdk.get_variant(key, "sdk-unit-1") for _ in range(5)}
        assert len(variants) == 1 and variants <= {"control", "treatment"}
        assert sdk.flush(timeout=10)
        assert sum(recorder.delivered.values()) == 1 and recorder.kinds["exposures"] == 1
        assert sdk.stats["exposures_logged"] == 1 and sdk.stats["exposures_deduplicated"] == 4


def test_not_enrolled_returns_default_and_logs_nothing(assignment: ServiceProcess, admin: httpx.Client) -> None:
    key = create_running(admin, targeting=[{"attribute": "country", "op": "eq", "value": "US"}])["key"]
    with recording_server() as (url, recorder), client(assignment, url) as sdk:
        assert sdk.get_variant(key, "u-fr", {"country": "FR"}) is None
        assert sdk.get_variant(key, "u-fr", {"country": "FR"}, default="control") == "control"
        assert sdk.get_variant("no-such-experiment", "u") is None
        sdk.flush(timeout=5)
        assert recorder.requests == 0


def test_overrides_are_served_but_not_exposed(assignment: ServiceProcess, admin: httpx.Client) -> None:
    key = create_running(admin)["key"]
    admin.put(f"/v1/experiments/{key}/overrides/qa-user", json={"variant": "treatment"})
    with recording_server() as (url, recorder), client(assignment, url) as sdk:
        assert sdk.get_variant(key, "qa-user") == "treatment"
        sdk.flush(timeout=5)
        assert recorder.requests == 0


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_a_non_finite_attribute_counts_as_missing_in_both_modes(
    mode: str, assignment: ServiceProcess, admin: httpx.Client
) -> None:
    targeting = [{"attribute": "country", "op": "eq", "value": "US"},
                 {"attribute": "score", "op": "exists", "value": False}]  # fmt: skip
    key = create_running(admin, targeting=targeting)["key"]
    with recording_server() as (url, _), client(assignment, url, mode=mode) as sdk:
        for i, unknown in enumerate([float("nan"), float("inf"), -float("inf")]):
            assert sdk.get_variant(key, f"u-{mode}-{i}", {"country": "US", "score": unknown}) is not None
        assert sdk.get_variant(key, f"u-{mode}-known", {"country": "US", "score": 3.5}) is None  # present
        assert sdk.stats["assign_errors"] == 0


def test_unreachable_assignment_service_returns_default(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with recording_server() as (url, recorder):
        with assay.Client(SDK_KEY, dead, url, timeout=0.2, retry=FAST_RETRY) as sdk:
            assert sdk.get_variant("any", "u1", default="control") == "control"
            assert sdk.get_variant("any", "u1") is None
            assert sdk.stats["assign_errors"] == 2 and sdk.stats["exposures_logged"] == 0
        assert recorder.requests == 0


def test_local_mode_matches_the_service_on_golden_vectors(
    assignment: ServiceProcess, admin: httpx.Client, sdk: httpx.Client
) -> None:
    by_config: dict[tuple[str, float, tuple[float, ...]], list[str]] = {}
    for case in GOLDEN["cases"]:
        if case["unit_id"]:
            by_config.setdefault((case["salt"], case["traffic"], tuple(case["weights"])), []).append(case["unit_id"])
    keys = {}
    for (salt, traffic, weights), units in by_config.items():
        variants = [{"key": f"v{i}", "weight": w} for i, w in enumerate(weights)]
        keys[create_running(admin, salt=salt, traffic=traffic, variants=variants)["key"]] = units
    with recording_server() as (url, _), client(assignment, url, mode="local") as local:
        for key, units in keys.items():
            service = sdk.post(
                "/v1/assign/batch", json={"units": [{"unit_id": u} for u in units], "experiments": [key]}
            )
            expected = [r["assignments"][key]["variant"] for r in service.json()["results"]]
            assert [local.get_variant(key, u) for u in units] == expected


def test_local_mode_polls_with_etag(assignment: ServiceProcess, admin: httpx.Client) -> None:
    with (
        recording_server() as (url, _),
        client(assignment, url, mode="local", config_poll_interval=3600) as local,
    ):
        first_etag = local.config_etag
        assert first_etag
        assert local.refresh_config() is False  # 304: unchanged
        key = create_running(admin)["key"]
        assert local.refresh_config() is True and local.config_etag != first_etag
        assert local.get_variant(key, "etag-unit") in ("control", "treatment")


def test_local_mode_shares_stickiness_with_the_service(
    assignment: ServiceProcess, admin: httpx.Client, sdk: httpx.Client, redis_server: RedisServer
) -> None:
    key = create_running(admin)["key"]
    units = [f"shared-{i}" for i in range(50)]
    service = sdk.post("/v1/assign/batch", json={"units": [{"unit_id": u} for u in units], "experiments": [key]})
    assigned = {r["unit_id"]: r["assignments"][key]["variant"] for r in service.json()["results"]}
    admin.patch(f"/v1/experiments/{key}", json={"traffic": 0.01})
    store = assay.RedisStickyStore(redis.Redis.from_url(redis_server.url, decode_responses=True))
    with recording_server() as (url, _), client(assignment, url, mode="local", sticky_store=store) as local:
        assert {u: local.get_variant(key, u) for u in units} == assigned
        newcomer = [local.get_variant(key, f"new-{i}") for i in range(200)]
        assert sum(v is not None for v in newcomer) < 20  # 1% traffic for units never seen


def test_in_memory_sticky_store_keeps_first_variant() -> None:
    store = assay.InMemoryStickyStore(max_units=2)
    assert store.set_if_absent("u1", "e", "a") == ("a", True)
    assert store.set_if_absent("u1", "e", "b") == ("a", False)
    store.set_if_absent("u2", "e", "a")
    store.set_if_absent("u3", "e", "a")
    assert store.get("u1", "e") is None  # bounded: the oldest unit was forgotten


def test_retries_on_5xx_429_and_network_errors_without_double_counting() -> None:
    def flaky(index: int, items: list[dict[str, Any]]) -> tuple[int, dict[str, str]] | None:
        return {0: (503, {}), 1: (429, {"Retry-After": "0"}), 2: (500, {})}.get(index)

    with recording_server(flaky) as (url, recorder):
        with assay.Client(SDK_KEY, "http://127.0.0.1:9", url, flush_interval=0.05, retry=FAST_RETRY) as sdk:
            for i in range(250):
                assert sdk.track("purchase", f"u{i}", value=float(i))
            assert sdk.flush(timeout=20)
            stats = sdk.stats
    assert len(recorder.delivered) == 250 and max(recorder.delivered.values()) == 1
    assert stats["sent"] == 250 and stats["retries"] == 3 and stats["dropped_after_retries"] == 0


def test_413_splits_the_batch() -> None:
    def too_big(index: int, items: list[dict[str, Any]]) -> tuple[int, dict[str, str]] | None:
        return (413, {}) if len(items) > 10 else None

    with recording_server(too_big) as (url, recorder):
        with assay.Client(SDK_KEY, "http://127.0.0.1:9", url, batch_size=100, flush_interval=0.05) as sdk:
            for i in range(100):
                sdk.track("view", f"u{i}")
            assert sdk.flush(timeout=20)
    assert len(recorder.delivered) == 100


def test_gives_up_after_the_retry_budget_and_counts_it() -> None:
    with recording_server(lambda index, items: (503, {})) as (url, recorder):
        with assay.Client(SDK_KEY, "http://127.0.0.1:9", url, flush_interval=0.05, retry=FAST_RETRY) as sdk:
            sdk.track("view", "u1")
            assert sdk.flush(timeout=20)
            assert sdk.stats["dropped_after_retries"] == 1 and sdk.stats["sent"] == 0
    assert recorder.requests == FAST_RETRY.max_attempts


def test_full_queue_drops_the_newest_and_never_blocks() -> None:
    with recording_server() as (url, recorder):
        recorder.gate.clear()  # the server stalls: nothing drains
        sdk = assay.Client(SDK_KEY, "http://127.0.0.1:9", url, max_queue=50, batch_size=10, flush_interval=0.01)
        try:
            results = [sdk.track("view", f"u{i}") for i in range(500)]
            assert results.count(False) == sdk.stats["dropped_queue_full"] > 0
            assert results[:50] == [True] * 50  # the oldest were kept
        finally:
            recorder.gate.set()
            sdk.close()
    assert sdk.stats["sent"] + sdk.stats["dropped_queue_full"] == 500


@pytest.mark.parametrize("bad", [{"value": float("nan")}, {"value": float("inf")}, {"properties": {"x": object()}}])
def test_invalid_events_are_refused_not_raised(bad: dict[str, Any]) -> None:
    with recording_server() as (url, _), assay.Client(SDK_KEY, "http://127.0.0.1:9", url) as sdk:
        assert sdk.track("purchase", "u1", **bad) is False
        assert sdk.stats["invalid"] == 1


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        assay.Client(SDK_KEY, mode="psychic")  # type: ignore[arg-type]
