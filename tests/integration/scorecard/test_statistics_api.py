"""POST /v1/analyze, /v1/srm and /v1/power over real HTTP: golden values, agreement with
scipy, and hostile input answered with 4xx."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
from scipy import stats

from deploy.processes import ServiceProcess
from services.scorecard.stats.quantile import QuantileStats, compare_quantiles
from tests.support.services import ADMIN_KEY, SDK_KEY, client_for
from tests.unit.scorecard.test_scorecard_quantile import page_loads, quantile_variant
from tests.unit.scorecard.test_stats_quantile import quantile_stats_from_events


def mean_variant(key: str, mean: float, sd: float, n: int) -> dict[str, Any]:
    total = mean * n
    return {"key": key, "n": n, "sum": total, "sum_squares": sd**2 * (n - 1) + total**2 / n}


GOLDEN = {
    "metric": {"name": "revenue", "type": "mean"},
    "variants": [mean_variant("control", 0.41, 3.9, 3407), mean_variant("treatment", 0.70, 6.2, 3461)],
}


@pytest.fixture
def stats_client(scorecard: ServiceProcess) -> httpx.Client:
    return client_for(scorecard.base_url, SDK_KEY)


def test_analyze_golden_values_from_gbstats(stats_client: httpx.Client) -> None:
    response = stats_client.post("/v1/analyze", json=GOLDEN)
    assert response.status_code == 200, response.text
    comparison = response.json()["comparisons"][0]
    assert comparison["variant"] == "treatment" and comparison["baseline"] == "control"
    assert comparison["absolute_effect"] == pytest.approx(0.29, abs=1e-4)
    assert comparison["absolute_ci"] == pytest.approx([0.04538, 0.53462], abs=1e-4)
    assert comparison["p_value"] == pytest.approx(0.02016, abs=1e-4)
    assert comparison["relative_effect"] == pytest.approx(0.70732, abs=1e-4)
    assert comparison["significant"] is True and comparison["cuped"]["applied"] is False


def test_analyze_agrees_with_scipy_welch(stats_client: httpx.Client) -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        a, b = rng.normal(10, 3, 400), rng.normal(10.4, 4, 350)
        body = {"metric": {"type": "mean"}, "variants": [
            {"key": "a", "n": a.size, "sum": a.sum(), "sum_squares": (a**2).sum()},
            {"key": "b", "n": b.size, "sum": b.sum(), "sum_squares": (b**2).sum()}]}  # fmt: skip
        got = stats_client.post("/v1/analyze", json=body).json()["comparisons"][0]
        expected = stats.ttest_ind(b, a, equal_var=False)
        assert got["p_value"] == pytest.approx(expected.pvalue, rel=1e-6)


def test_sequential_interval_is_wider(stats_client: httpx.Client) -> None:
    fixed = stats_client.post("/v1/analyze", json=GOLDEN).json()["comparisons"][0]["absolute_ci"]
    sequential = stats_client.post("/v1/analyze", json={**GOLDEN, "sequential": True}).json()["comparisons"][0]
    assert sequential["absolute_ci"][0] < fixed[0] and sequential["absolute_ci"][1] > fixed[1]


def test_srm_agrees_with_scipy(stats_client: httpx.Client) -> None:
    body = {"counts": {"control": 5000, "treatment": 5400}, "weights": {"control": 0.5, "treatment": 0.5}}
    result = stats_client.post("/v1/srm", json=body).json()
    expected = stats.chisquare([5000, 5400])
    assert result["chi2"] == pytest.approx(expected.statistic) and result["p_value"] == pytest.approx(expected.pvalue)
    assert result["mismatch"] is True and result["threshold"] == 0.001


def test_power_round_trip(stats_client: httpx.Client) -> None:
    size = stats_client.post(
        "/v1/power", json={"metric_type": "proportion", "baseline_mean": 0.1, "relative_mde": 0.05}
    )
    assert size.status_code == 200
    n = size.json()["n_per_variant"]
    assert 50_000 < n < 70_000  # textbook: ~57,800 per arm for 10% -> 10.5% at 80% power
    mde = stats_client.post("/v1/power", json={"metric_type": "proportion", "baseline_mean": 0.1, "n_per_variant": n})
    assert mde.json()["relative_mde"] == pytest.approx(0.05, rel=0.02)


def bad(variants: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"metric": {"type": "mean"}, "variants": variants, **extra}


@pytest.mark.parametrize(
    "body",
    [
        bad([{"key": "a", "n": -5, "sum": 1, "sum_squares": 1}, mean_variant("b", 1, 1, 10)]),
        bad([{"key": "a", "n": 10, "sum": 100, "sum_squares": 5}, mean_variant("b", 1, 1, 10)]),
        bad([mean_variant("a", 1, 1, 10)]),
        bad([mean_variant(f"v{i}", 1, 1, 10) for i in range(10_000)]),
        {"metric": {"type": "median"}, "variants": [mean_variant("a", 1, 1, 10), mean_variant("b", 1, 1, 10)]},
        bad([mean_variant("a", 1, 1, 10), mean_variant("b", 1, 1, 10)], alpha=2),
        bad([mean_variant("a", 1, 1, 10), mean_variant("b", 1, 1, 10)], correction="bonferroni-ish"),
        bad([{"key": "a", "n": 10}, mean_variant("b", 1, 1, 10)]),
        {"metric": {"type": "proportion"}, "variants": [{"key": "a", "n": 10, "sum": 20, "sum_squares": 20},
                                                        {"key": "b", "n": 10, "sum": 2, "sum_squares": 2}]},
        [], "string", None,
    ],
)  # fmt: skip
def test_analyze_hostile_input_is_4xx(stats_client: httpx.Client, body: Any) -> None:
    response = stats_client.post("/v1/analyze", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_analyze_non_finite_numbers_are_4xx(stats_client: httpx.Client, literal: bytes) -> None:
    content = (b'{"metric": {"type": "mean"}, "variants": [{"key": "a", "n": 10, "sum": ' + literal
               + b', "sum_squares": 1}, {"key": "b", "n": 10, "sum": 1, "sum_squares": 1}]}')  # fmt: skip
    response = stats_client.post("/v1/analyze", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text


def test_zero_variance_is_data_not_an_error(stats_client: httpx.Client) -> None:
    flat = [{"key": "a", "n": 10, "sum": 10, "sum_squares": 10}, {"key": "b", "n": 10, "sum": 10, "sum_squares": 10}]
    response = stats_client.post("/v1/analyze", json={"metric": {"type": "mean"}, "variants": flat})
    assert response.status_code == 200
    assert response.json()["comparisons"][0]["error"]["code"] == "zero_variance"


@pytest.mark.parametrize(
    "body",
    [{"counts": {"a": -1, "b": 5}, "weights": {"a": 0.5, "b": 0.5}},
     {"counts": {"a": 1, "b": 5}, "weights": {"a": 0.5, "c": 0.5}},
     {"counts": {"a": 1, "b": 5}, "weights": {"a": 0, "b": 1}},
     {"counts": {f"v{i}": 1 for i in range(10_000)}, "weights": {f"v{i}": 1 for i in range(10_000)}},
     {"counts": {"a": 1}, "weights": {"a": 1}}],
)  # fmt: skip
def test_srm_hostile_input_is_4xx(stats_client: httpx.Client, body: dict[str, Any]) -> None:
    response = stats_client.post("/v1/srm", json=body)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize(
    "body",
    [{"metric_type": "proportion", "baseline_mean": 1.5, "relative_mde": 0.1},
     {"metric_type": "mean", "baseline_mean": 10, "relative_mde": 0.1},
     {"metric_type": "proportion", "baseline_mean": 0.1},
     {"metric_type": "proportion", "baseline_mean": 0.1, "relative_mde": 0.1, "n_per_variant": 100},
     {"metric_type": "proportion", "baseline_mean": 0.6, "relative_mde": 0.9},
     {"metric_type": "mean", "baseline_mean": 10, "variance": -1, "relative_mde": 0.1}],
)  # fmt: skip
def test_power_hostile_input_is_4xx(stats_client: httpx.Client, body: dict[str, Any]) -> None:
    response = stats_client.post("/v1/power", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_statistics_endpoints_need_a_key(scorecard: ServiceProcess) -> None:
    for key, expected in ((None, 401), ("unknown-key-xxxxxxxxxxxxxx", 401)):
        with client_for(scorecard.base_url, key) as client:
            for path in ("/v1/analyze", "/v1/srm", "/v1/power"):
                assert client.post(path, json={}).status_code == expected
    with client_for(scorecard.base_url, ADMIN_KEY) as client:
        assert client.post("/v1/analyze", json=GOLDEN).status_code == 200


def p90_variant(key: str, seed: int, slowdown: float, n_units: int = 2000) -> tuple[dict[str, Any], QuantileStats]:
    """A quantile variant as the results document carries it, from simulated page loads."""
    rng = np.random.default_rng(seed)
    values, units = page_loads(rng, n_units, slowdown)
    block = quantile_stats_from_events(values, units, 0.9, n_units)
    return quantile_variant(key, block, values, units), block


def test_analyze_a_quantile_metric(stats_client: httpx.Client) -> None:
    (control, control_stats), (treatment, treatment_stats) = p90_variant("control", 1, 1.0), p90_variant("t", 2, 1.2)
    body = {"metric": {"name": "page_load_p90", "type": "quantile", "quantile": 0.9}, "variants": [control, treatment]}
    response = stats_client.post("/v1/analyze", json=body)
    assert response.status_code == 200, response.text
    (comparison,) = response.json()["comparisons"]
    expected = compare_quantiles("control", control_stats, "t", treatment_stats).to_dict()
    assert comparison["variant_mean"] == treatment_stats.value and comparison["baseline_mean"] == control_stats.value
    for field in ("absolute_effect", "relative_effect", "p_value"):
        assert comparison[field] == pytest.approx(expected[field], rel=1e-12)
    assert comparison["absolute_ci"] == pytest.approx(expected["absolute_ci"], rel=1e-12)
    assert comparison["significant"] is True and comparison["error"] is None
    # Sums are not needed for a quantile metric; a variant without events is data, not an error.
    bare = [{k: v for k, v in variant.items() if k not in ("sum", "sum_squares")} for variant in (control, treatment)]
    empty = {**bare[1]["quantile"], **dict.fromkeys(("value", "lower_probability", "upper_probability",
             "lower_value", "upper_value")), **dict.fromkeys(("n_events", "events_below", "events_below_squares",
             "events_squares", "events_products"), 0)}  # fmt: skip
    answer = stats_client.post("/v1/analyze", json={**body, "variants": [bare[0], {**bare[1], "quantile": empty}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["comparisons"][0]["error"]["code"] == "empty_variant"


def _quantile_body(**changes: Any) -> dict[str, Any]:
    control, _ = p90_variant("control", 1, 1.0, n_units=300)
    treatment, _ = p90_variant("t", 2, 1.1, n_units=300)
    block = {**treatment["quantile"], **changes.pop("block", {})}
    return {"metric": {"type": "quantile"}, "variants": [control, {**treatment, "quantile": block}], **changes}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (_quantile_body(block={"events_below": 10**9}), "events at or below the quantile"),
        (_quantile_body(block={"lower_probability": 0.95}), "lower_probability < probability"),
        (_quantile_body(block={"probability": 0.5}), "quantile.probability must be the metric's quantile"),
        (_quantile_body(block={"value": None}), "needs value"),
        (_quantile_body(cuped=True), "not available for quantile metrics"),
        (_quantile_body(block={"probability": 1.5}), "less than 1"),
        ({"metric": {"type": "quantile"}, "variants": [{"key": "a", "n": 10, "sum": 1.0, "sum_squares": 1.0}] * 2},
         "needs a quantile block"),
        ({"metric": {"type": "mean"}, "variants": [_quantile_body()["variants"][0]] * 2}, "belongs to quantile"),
    ],
)  # fmt: skip
def test_analyze_bad_quantile_input_is_422(stats_client: httpx.Client, body: dict[str, Any], words: str) -> None:
    response = stats_client.post("/v1/analyze", json=body)
    assert response.status_code == 422, response.text
    assert words in str(response.json()["detail"])
