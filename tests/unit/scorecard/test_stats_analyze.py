"""The /v1/analyze mirror: output shape, JSON safety, A/A error rate, every error code."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.scorecard.stats import (
    CovariateStats,
    DenominatorStats,
    ErrorCode,
    InputError,
    SampleStats,
    VariantStats,
    analyze,
    analyze_payload,
    minimum_detectable_effect,
    srm_chi_square,
)

COMPARISON_FIELDS = {
    "variant",
    "baseline",
    "baseline_mean",
    "variant_mean",
    "absolute_effect",
    "absolute_ci",
    "relative_effect",
    "relative_ci",
    "p_value",
    "significant",
    "cuped",
    "error",
}


def test_comparison_has_exactly_the_contract_fields(golden_control, golden_treatment):
    document = analyze("mean", [golden_control, golden_treatment]).to_dict()
    (comparison,) = document["comparisons"]
    assert set(comparison) == COMPARISON_FIELDS
    assert set(comparison["cuped"]) == {"applied", "theta", "variance_reduction", "reason"}
    assert comparison["error"] is None
    assert json.loads(json.dumps(document, allow_nan=False)) == document


def test_errors_serialise_without_nan():
    variants = [VariantStats("a", SampleStats(0, 0.0, 0.0)), VariantStats("b", SampleStats(5, 5.0, 5.0))]
    document = analyze("mean", variants, cuped=True).to_dict()
    text = json.dumps(document, allow_nan=False)
    assert "NaN" not in text and "Infinity" not in text
    comparison = document["comparisons"][0]
    assert comparison["error"]["code"] == "empty_variant"
    assert comparison["baseline_mean"] is None
    assert comparison["variant_mean"] == 1.0
    assert comparison["p_value"] is None and comparison["significant"] is False


def test_baseline_mean_zero_keeps_the_absolute_effect():
    # Values +-1 around a zero mean: the absolute effect is fine, the relative one is not.
    variants = [VariantStats("a", SampleStats(100, 0.0, 100.0)), VariantStats("b", SampleStats(100, 20.0, 104.0))]
    (comparison,) = analyze("mean", variants).comparisons
    assert comparison.error is not None
    assert comparison.error.code is ErrorCode.BASELINE_MEAN_ZERO
    assert comparison.absolute_effect == pytest.approx(0.2)
    assert comparison.relative_effect is None and comparison.relative_ci is None
    assert comparison.p_value is not None


def test_a_a_false_positive_rate_is_nominal(normal_sums):
    rng = np.random.default_rng(12345)
    runs, n, alpha = 2000, 500, 0.05
    sums, squares = normal_sums(rng, n, 3.0, 2.0, runs * 2)
    rejections = 0
    for run in range(runs):
        variants = [
            VariantStats(k, SampleStats(n, float(sums[2 * run + i]), float(squares[2 * run + i])))
            for i, k in enumerate(("control", "treatment"))
        ]
        rejections += analyze("mean", variants, alpha=alpha).comparisons[0].significant
    assert 0.035 <= rejections / runs <= 0.065


def test_a_a_false_positive_rate_for_proportions():
    rng = np.random.default_rng(54321)
    runs, n = 2000, 2000
    counts = rng.binomial(n, 0.05, size=(runs, 2))
    rejections = sum(
        analyze(
            "proportion",
            [
                VariantStats("c", SampleStats(n, float(c), float(c))),
                VariantStats("t", SampleStats(n, float(t), float(t))),
            ],
        )
        .comparisons[0]
        .significant
        for c, t in counts
    )
    assert 0.035 <= rejections / runs <= 0.065


def _mean(key: str, n: int, total: float, squares: float) -> VariantStats:
    return VariantStats(key, SampleStats(n, total, squares))


OK = _mean("b", 100, 50.0, 400.0)


def _input_codes(*args, **kwargs) -> set[ErrorCode]:
    return {error.code for error in analyze(*args, **kwargs).errors}


def _comparison_code(metric_type: str, variants: list[VariantStats]) -> ErrorCode:
    (comparison,) = analyze(metric_type, variants).comparisons
    assert comparison.error is not None
    return comparison.error.code


def _produced_codes() -> set[ErrorCode]:
    bad_cov = CovariateStats(sum=100.0, sum_squares=1.0, sum_products=0.0)
    bad_den = DenominatorStats(sum=100.0, sum_squares=1.0, sum_products=0.0)
    zero_den = DenominatorStats(0.0, 0.0, 0.0)
    srm = srm_chi_square({"a": -1, "b": 2}, {"a": 0.5, "b": 0.5})
    assert isinstance(srm, list)
    mde = minimum_detectable_effect(0.5, 2)
    assert not isinstance(mde, float)
    codes = {error.code for error in srm} | {mde.code}
    codes |= _input_codes("mean", [_mean("a", 10, float("nan"), 1.0), OK])
    codes |= _input_codes("mean", [_mean("a", -1, 0.0, 0.0), OK])
    codes |= _input_codes("mean", [_mean("a", 2.5, 0.0, 0.0), OK])  # type: ignore[arg-type]
    codes |= _input_codes("mean", [_mean("a", 10, 1e200, 1e200), OK])
    codes |= _input_codes("mean", [_mean("a", 10, 10.0, 1.0), OK])
    codes |= _input_codes("mean", [VariantStats("a", OK.sample, bad_cov), OK])
    codes |= _input_codes("ratio", [VariantStats("a", OK.sample, None, bad_den), OK])
    codes |= _input_codes("proportion", [_mean("a", 10, 11.0, 13.0), OK])
    codes |= _input_codes("median", [OK, OK])
    codes |= _input_codes("mean", [OK])
    codes |= _input_codes("mean", [OK] * 10_000)
    codes |= _input_codes("mean", [OK, OK])
    codes |= _input_codes("mean", [_mean("", 10, 1.0, 1.0), OK])
    codes |= _input_codes("mean", [_mean("a", 10, 1.0, 1.0), OK], alpha=2.0)
    codes |= _input_codes("mean", [_mean("a", 10, 1.0, 1.0), OK], correction="sidak")
    codes.add(_comparison_code("mean", [_mean("a", 0, 0.0, 0.0), OK]))
    codes.add(_comparison_code("mean", [_mean("a", 1, 1.0, 1.0), OK]))
    codes.add(_comparison_code("mean", [_mean("a", 10, 10.0, 10.0), _mean("b", 5, 10.0, 20.0)]))
    codes.add(_comparison_code("mean", [_mean("a", 100, 0.0, 100.0), OK]))
    codes.add(
        _comparison_code(
            "ratio",
            [
                VariantStats("a", SampleStats(10, 0.0, 0.0), None, zero_den),
                VariantStats("b", OK.sample, None, DenominatorStats(100.0, 100.0, 50.0)),
            ],
        )
    )
    return codes | _quantile_codes()


def _quantile_codes() -> set[ErrorCode]:
    block = {"probability": 0.5, "n_events": 400, "value": 1.0, "lower_probability": 0.45,
             "upper_probability": 0.55, "lower_value": -1e200, "upper_value": 1e200, "events_below": 200,
             "events_below_squares": 400, "events_squares": 1600, "events_products": 800}  # fmt: skip
    spread = [{"key": key, "n": 100, "quantile": block} for key in ("a", "b")]
    (comparison,) = analyze_payload({"metric": {"type": "quantile"}, "variants": spread}).comparisons
    assert comparison.error is not None
    impossible = [{"key": "a", "n": 100, "quantile": {**block, "events_below": 401}}, spread[1]]
    errors = analyze_payload({"metric": {"type": "quantile"}, "variants": impossible}).errors
    return {comparison.error.code} | {error.code for error in errors}


def test_every_error_code_is_produced():
    produced = _produced_codes()
    assert produced == set(ErrorCode), f"never produced: {set(ErrorCode) - produced}"


def test_input_errors_serialise():
    errors = analyze("mean", [_mean("a", -1, 0.0, 0.0), OK]).to_dict()["errors"]
    assert errors == [
        {"code": "negative_count", "field": "variants[0].n", "message": "variants[0].n must be >= 0, got -1"}
    ]
    assert isinstance(analyze("mean", [OK]).errors[0], InputError)
