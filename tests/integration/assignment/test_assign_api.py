"""`/v1/assign`, `/v1/assign/batch` and `/v1/config` over real HTTP with real Redis."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from scipy import stats

from tests.support.services import SDK_KEY, create_running, unique_key

GOLDEN = json.loads((Path(__file__).parents[2] / "golden" / "bucketing.json").read_text())


def assign(sdk: httpx.Client, unit: str, key: str, **attributes: Any) -> dict[str, Any]:
    response = sdk.post("/v1/assign", json={"unit_id": unit, "attributes": attributes, "experiments": [key]})
    assert response.status_code == 200, response.text
    return dict(response.json()["assignments"][key])


def batch(sdk: httpx.Client, units: list[str], keys: list[str], **attributes: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for start in range(0, len(units), 1000):
        chunk = units[start : start + 1000]
        payload = {"units": [{"unit_id": u, "attributes": attributes} for u in chunk], "experiments": keys}
        response = sdk.post("/v1/assign/batch", json=payload)
        assert response.status_code == 200, response.text
        results.extend(response.json()["results"])
    return results


def test_response_shape_and_sticky_reason(admin: httpx.Client, sdk: httpx.Client) -> None:
    key = create_running(admin)["key"]
    first = sdk.post("/v1/assign", json={"unit_id": "shape-1", "experiments": [key]}).json()
    assert first["unit_id"] == "shape-1" and first["degraded"] is False
    assert first["assignments"][key]["reason"] == "hash"
    again = assign(sdk, "shape-1", key)
    assert again == {"variant": first["assignments"][key]["variant"], "reason": "sticky"}


def test_every_reason_code(admin: httpx.Client, sdk: httpx.Client) -> None:
    targeted = create_running(admin, targeting=[{"attribute": "country", "op": "eq", "value": "US"}], traffic=0.5)
    key = targeted["key"]
    draft = admin.post(
        "/v1/experiments", json={"key": unique_key(), "name": "d", "variants": targeted["variants"]}
    ).json()
    admin.put(f"/v1/experiments/{key}/overrides/qa-unit", json={"variant": "treatment"})
    units = [f"reason-{i}" for i in range(200)]
    reasons = {r["assignments"][key]["reason"] for r in batch(sdk, units, [key], country="US")}
    assert reasons == {"hash", "not_in_traffic"}
    assert assign(sdk, units[0], key, country="US")["reason"] in ("sticky", "not_in_traffic")
    assert assign(sdk, "never-seen", key, country="FR") == {"variant": None, "reason": "not_targeted"}
    assert assign(sdk, "qa-unit", key, country="FR") == {"variant": "treatment", "reason": "override"}
    assert assign(sdk, "u", draft["key"]) == {"variant": None, "reason": "not_running"}
    assert assign(sdk, "u", "no-such-experiment") == {"variant": None, "reason": "unknown_experiment"}
    layered = create_running(admin, layer=unique_key("layer"), layer_share=0.1)
    excluded = {r["assignments"][layered["key"]]["reason"] for r in batch(sdk, units, [layered["key"]])}
    assert "layer_excluded" in excluded


def test_default_is_every_running_experiment(admin: httpx.Client, sdk: httpx.Client) -> None:
    keys = {create_running(admin)["key"] for _ in range(2)}
    answer = sdk.post("/v1/assign", json={"unit_id": "all-1"}).json()
    assert keys <= set(answer["assignments"])
    assert all(a["reason"] != "not_running" for a in answer["assignments"].values())


def test_golden_vectors_match_the_service(admin: httpx.Client, sdk: httpx.Client) -> None:
    configs: dict[tuple[str, float, tuple[float, ...]], list[dict[str, Any]]] = {}
    for case in GOLDEN["cases"]:
        if case["unit_id"]:  # the API requires a non-empty unit id
            configs.setdefault((case["salt"], case["traffic"], tuple(case["weights"])), []).append(case)
    for (salt, traffic, weights), cases in configs.items():
        variants = [{"key": f"v{i}", "weight": w} for i, w in enumerate(weights)]
        key = create_running(admin, salt=salt, traffic=traffic, variants=variants)["key"]
        results = batch(sdk, [c["unit_id"] for c in cases], [key])
        for case, result in zip(cases, results, strict=True):
            expected = f"v{case['variant_index']}" if case["enrolled"] else None
            assert result["assignments"][key]["variant"] == expected, case


def test_weights_honoured_over_100k_units(admin: httpx.Client, sdk: httpx.Client) -> None:
    weights = [0.2, 0.3, 0.5]
    variants = [{"key": f"v{i}", "weight": w} for i, w in enumerate(weights)]
    key = create_running(admin, variants=variants)["key"]
    counts = np.zeros(3)
    for result in batch(sdk, [f"w-{i}" for i in range(100_000)], [key]):
        counts[int(result["assignments"][key]["variant"][1:])] += 1
    assert counts.sum() == 100_000
    assert stats.chisquare(counts, f_exp=np.array(weights) * 100_000).pvalue > 0.001, counts


def test_two_salts_are_independent(admin: httpx.Client, sdk: httpx.Client) -> None:
    first, second = create_running(admin)["key"], create_running(admin)["key"]
    table = np.zeros((2, 2))
    index = {"control": 0, "treatment": 1}
    for result in batch(sdk, [f"ind-{i}" for i in range(20_000)], [first, second]):
        a = result["assignments"]
        table[index[a[first]["variant"]], index[a[second]["variant"]]] += 1
    assert stats.chi2_contingency(table)[1] > 0.001, table


def test_ramp_10_to_50_percent_keeps_every_enrolled_unit(admin: httpx.Client, sdk: httpx.Client) -> None:
    key = create_running(admin, traffic=0.1)["key"]
    units = [f"ramp-{i}" for i in range(5000)]
    before = {r["unit_id"]: r["assignments"][key]["variant"] for r in batch(sdk, units, [key])}
    assert admin.patch(f"/v1/experiments/{key}", json={"traffic": 0.5}).status_code == 200
    after = {r["unit_id"]: r["assignments"][key]["variant"] for r in batch(sdk, units, [key])}
    enrolled_before = {u for u, v in before.items() if v}
    assert 350 < len(enrolled_before) < 650
    assert all(after[u] == before[u] for u in enrolled_before)
    assert 2200 < sum(1 for v in after.values() if v) < 2800


def test_stored_assignment_wins_over_targeting_and_traffic_changes(admin: httpx.Client, sdk: httpx.Client) -> None:
    key = create_running(admin, targeting=[{"attribute": "plan", "op": "eq", "value": "pro"}])["key"]
    units = [f"sticky-{i}" for i in range(300)]
    first = {r["unit_id"]: r["assignments"][key]["variant"] for r in batch(sdk, units, [key], plan="pro")}
    admin.patch(
        f"/v1/experiments/{key}",
        json={"traffic": 0.05, "targeting": [{"attribute": "plan", "op": "eq", "value": "free"}]},
    )
    later = batch(sdk, units, [key], plan="pro")
    assert all(r["assignments"][key] == {"variant": first[r["unit_id"]], "reason": "sticky"} for r in later)
    assert assign(sdk, "newcomer", key, plan="pro")["reason"] == "not_targeted"


def test_concurrent_first_assignment_gives_one_variant(assignment, admin: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    key = create_running(admin)["key"]
    limits = httpx.Limits(max_connections=32)
    with httpx.Client(base_url=assignment.base_url, headers={"Authorization": f"Bearer {SDK_KEY}"},
                      limits=limits, timeout=30) as client:  # fmt: skip

        def call(_: int) -> dict[str, Any]:
            response = client.post("/v1/assign", json={"unit_id": "race-unit", "experiments": [key]})
            return {"degraded": response.json()["degraded"], **response.json()["assignments"][key]}

        with ThreadPoolExecutor(max_workers=32) as pool:
            answers = list(pool.map(call, range(200)))
    assert len({a["variant"] for a in answers}) == 1
    stored = [a for a in answers if not a["degraded"]]
    assert len(stored) >= 100
    # Exactly one call stored the assignment; every other non-degraded call read it back.
    assert [a["reason"] for a in stored].count("hash") == 1
    assert all(a["reason"] == "sticky" for a in stored if a["reason"] != "hash")


def test_layers_are_exclusive(admin: httpx.Client, sdk: httpx.Client) -> None:
    layer = unique_key("layer")
    keys = [create_running(admin, layer=layer, layer_share=share)["key"] for share in (0.3, 0.3, 0.4)]
    units = [f"layer-{i}" for i in range(6000)]
    enrolled = [0, 0, 0]
    for result in batch(sdk, units, keys):
        hits = [i for i, k in enumerate(keys) if result["assignments"][k]["variant"] is not None]
        assert len(hits) == 1, result  # the three slices tile the layer: exactly one each
        enrolled[hits[0]] += 1
    assert stats.chisquare(enrolled, f_exp=[1800, 1800, 2400]).pvalue > 0.001
    full = admin.post("/v1/experiments", json={"key": unique_key(), "name": "x", "layer": layer,
        "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]})  # fmt: skip
    assert full.status_code == 409 and "no free share" in full.json()["detail"]


def test_overrides_win_and_can_be_removed(admin: httpx.Client, sdk: httpx.Client) -> None:
    key = create_running(admin)["key"]
    natural = assign(sdk, "qa-42", key)["variant"]
    forced = "treatment" if natural == "control" else "control"
    admin.put(f"/v1/experiments/{key}/overrides/qa-42", json={"variant": forced})
    assert assign(sdk, "qa-42", key) == {"variant": forced, "reason": "override"}
    assert admin.get(f"/v1/experiments/{key}/overrides").json() == {"qa-42": forced}
    admin.delete(f"/v1/experiments/{key}/overrides/qa-42")
    assert assign(sdk, "qa-42", key) == {"variant": natural, "reason": "sticky"}


def test_paused_experiment_does_not_assign_and_resumes_sticky(admin: httpx.Client, sdk: httpx.Client) -> None:
    key = create_running(admin)["key"]
    variant = assign(sdk, "pause-1", key)["variant"]
    admin.post(f"/v1/experiments/{key}/status", json={"status": "paused"})
    assert assign(sdk, "pause-1", key) == {"variant": None, "reason": "not_running"}
    admin.post(f"/v1/experiments/{key}/status", json={"status": "running"})
    assert assign(sdk, "pause-1", key) == {"variant": variant, "reason": "sticky"}


def test_config_etag(admin: httpx.Client, sdk: httpx.Client) -> None:
    key = create_running(admin)["key"]
    first = sdk.get("/v1/config")
    assert first.status_code == 200 and first.headers["etag"]
    body = first.json()
    assert body["bucketing_version"] == 1 and body["buckets"] == 10_000
    assert key in [e["key"] for e in body["experiments"]]
    assert all(e["status"] == "running" for e in body["experiments"])
    unchanged = sdk.get("/v1/config", headers={"If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    admin.patch(f"/v1/experiments/{key}", json={"traffic": 0.9})
    changed = sdk.get("/v1/config", headers={"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200 and changed.headers["etag"] != first.headers["etag"]


def test_batch_limit_is_413(sdk: httpx.Client) -> None:
    response = sdk.post("/v1/assign/batch", json={"units": [{"unit_id": f"u{i}"} for i in range(1001)]})
    assert response.status_code == 413 and "at most 1000" in response.json()["detail"]


def test_metrics_count_reasons(assignment, admin: httpx.Client, sdk: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    key = create_running(admin)["key"]
    assign(sdk, "metric-unit", key)
    text = httpx.get(f"{assignment.base_url}/metrics").text
    assert 'assay_assignments_total{reason="hash"}' in text
    assert 'assay_http_requests_total{method="POST",route="/v1/assign",status="200"}' in text
