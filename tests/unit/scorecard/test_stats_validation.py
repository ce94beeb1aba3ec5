"""Hostile input never raises: it comes back as typed InputErrors naming the field."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.scorecard.stats import (
    CovariateStats,
    DenominatorStats,
    ErrorCode,
    MetricType,
    SampleStats,
    VariantStats,
    analyze,
    analyze_payload,
    validate_variant_stats,
)
from tests.support.strategies import json_documents

GOOD = SampleStats(100, 50.0, 400.0)


def _codes(variant: VariantStats, metric_type: MetricType = MetricType.MEAN) -> set[ErrorCode]:
    return {error.code for error in validate_variant_stats(variant, metric_type)}


def test_valid_statistics_pass():
    assert validate_variant_stats(VariantStats("a", GOOD), MetricType.MEAN) == []


@pytest.mark.parametrize(
    ("sample", "code"),
    [
        (SampleStats(-1, 0.0, 0.0), ErrorCode.NEGATIVE_COUNT),
        (SampleStats(10, math.nan, 1.0), ErrorCode.INVALID_NUMBER),
        (SampleStats(10, 1.0, math.inf), ErrorCode.INVALID_NUMBER),
        (SampleStats(10, -math.inf, 1.0), ErrorCode.INVALID_NUMBER),
        (SampleStats(10, 1e200, 1e200), ErrorCode.VALUE_OUT_OF_RANGE),
        (SampleStats(10, 10.0, 1.0), ErrorCode.INCONSISTENT_SUM_SQUARES),
        (SampleStats(10, 0.0, -1.0), ErrorCode.INCONSISTENT_SUM_SQUARES),
        (SampleStats(0, 3.0, 9.0), ErrorCode.INCONSISTENT_SUM_SQUARES),
        (SampleStats(2.5, 1.0, 1.0), ErrorCode.NON_INTEGER_COUNT),  # type: ignore[arg-type]
        (SampleStats(True, 1.0, 1.0), ErrorCode.NON_INTEGER_COUNT),
        (SampleStats("10", 1.0, 1.0), ErrorCode.NON_INTEGER_COUNT),  # type: ignore[arg-type]
        (SampleStats(10, "1", 1.0), ErrorCode.INVALID_NUMBER),  # type: ignore[arg-type]
        (SampleStats(10, None, 1.0), ErrorCode.INVALID_NUMBER),  # type: ignore[arg-type]
    ],
)
def test_hostile_sample_statistics_are_typed_errors(sample, code):
    errors = validate_variant_stats(VariantStats("a", sample), MetricType.MEAN)
    assert code in {error.code for error in errors}
    assert all(error.field.startswith("variant") for error in errors)


def test_sum_squares_within_rounding_tolerance_is_accepted():
    n, total = 1_000_000, 3_000_000.0  # every unit is 3.0: variance exactly 0
    exact = total * total / n
    assert _codes(VariantStats("a", SampleStats(n, total, exact * (1 - 1e-12)))) == set()


def test_inconsistent_covariate_blocks():
    impossible_squares = CovariateStats(sum=100.0, sum_squares=1.0, sum_products=0.0)
    assert ErrorCode.INCONSISTENT_COVARIATE in _codes(VariantStats("a", GOOD, covariate=impossible_squares))
    # Centred cross-product larger than sqrt(Sxx Syy): a correlation above 1.
    too_correlated = CovariateStats(sum=0.0, sum_squares=100.0, sum_products=10_000.0)
    assert ErrorCode.INCONSISTENT_COVARIATE in _codes(VariantStats("a", GOOD, covariate=too_correlated))
    nan_products = CovariateStats(0.0, 100.0, 0.0, denominator_products=math.nan)
    assert ErrorCode.INVALID_NUMBER in _codes(VariantStats("a", GOOD, covariate=nan_products))


def test_ratio_metric_needs_a_consistent_denominator():
    assert ErrorCode.MISSING_DENOMINATOR in _codes(VariantStats("a", GOOD), MetricType.RATIO)
    bad = DenominatorStats(sum=100.0, sum_squares=10.0, sum_products=0.0)
    assert ErrorCode.INCONSISTENT_DENOMINATOR in _codes(VariantStats("a", GOOD, denominator=bad), MetricType.RATIO)


@pytest.mark.parametrize("sample", [SampleStats(10, 11.0, 13.0), SampleStats(10, -1.0, 1.0), SampleStats(10, 5.0, 7.0)])
def test_proportion_must_be_zero_one_data(sample):
    assert ErrorCode.INCONSISTENT_PROPORTION in _codes(VariantStats("a", sample), MetricType.PROPORTION)


def test_invalid_variant_key():
    assert _codes(VariantStats("", GOOD)) == {ErrorCode.INVALID_VARIANT_KEY}
    nameless = VariantStats(None, GOOD)
    assert _codes(nameless) == {ErrorCode.INVALID_VARIANT_KEY}


def test_ten_thousand_variants_are_refused_quickly():
    variants = [VariantStats(f"v{i}", GOOD) for i in range(10_000)]
    result = analyze("mean", variants, max_variants=50)
    assert [error.code for error in result.errors] == [ErrorCode.TOO_MANY_VARIANTS]
    assert result.comparisons == []
    body = {
        "metric": {"type": "mean"},
        "variants": [{"key": f"v{i}", "n": 1, "sum": 0, "sum_squares": 0} for i in range(10_000)],
    }
    assert [e.code for e in analyze_payload(body).errors] == [ErrorCode.TOO_MANY_VARIANTS]


def test_unknown_metric_type_and_parameters():
    variants = [VariantStats("a", GOOD), VariantStats("b", GOOD)]
    assert analyze("median", variants).errors[0].code is ErrorCode.UNKNOWN_METRIC_TYPE
    codes = {e.code: e.field for e in analyze("mean", variants, alpha=1.5, correction="x").errors}
    assert codes == {ErrorCode.INVALID_PARAMETER: "alpha", ErrorCode.UNKNOWN_CORRECTION: "correction"}
    tuning = analyze("mean", variants, sequential_tuning=-5).errors
    assert [(e.code, e.field) for e in tuning] == [(ErrorCode.INVALID_PARAMETER, "sequential_tuning")]


def test_request_level_errors_name_the_variant():
    variants = [VariantStats("a", GOOD), VariantStats("a", SampleStats(-3, 0.0, 0.0))]
    errors = analyze("mean", variants).errors
    assert {(e.code, e.field) for e in errors} == {
        (ErrorCode.NEGATIVE_COUNT, "variants[1].n"),
        (ErrorCode.DUPLICATE_VARIANT_KEY, "variants[1].key"),
    }
    assert analyze("mean", variants[:1]).errors[0].code is ErrorCode.TOO_FEW_VARIANTS


def test_payload_matching_the_design_example():
    body = {
        "metric": {"name": "revenue", "type": "mean"},
        "variants": [
            {
                "key": "control",
                "n": 1000,
                "sum": 410.0,
                "sum_squares": 15377.0,
                "covariate": {"sum": 380.0, "sum_squares": 14000.0, "sum_products": 13000.0},
            },
            {"key": "treatment", "n": 1000.0, "sum": 700.0, "sum_squares": 38930.0},
        ],
        "alpha": 0.05,
        "cuped": False,
        "sequential": False,
        "sequential_tuning": 5000,
        "correction": "none",
    }
    result = analyze_payload(body)
    assert result.errors == []
    (comparison,) = result.comparisons
    assert comparison.variant == "treatment"
    assert comparison.absolute_effect == pytest.approx(0.29, rel=1e-12)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([], ErrorCode.INVALID_PARAMETER),
        ({"metric": {"type": "mean"}, "variants": "x"}, ErrorCode.TOO_FEW_VARIANTS),
        ({"metric": {"type": "mean"}, "variants": [{"key": "a"}, {}]}, ErrorCode.INVALID_NUMBER),
        (
            {
                "metric": {"type": "mean"},
                "cuped": "yes",
                "variants": [{"key": "a", "n": 2, "sum": 1, "sum_squares": 1}] * 2,
            },
            ErrorCode.INVALID_PARAMETER,
        ),
        (
            {
                "metric": "mean",
                "variants": [
                    {"key": "a", "n": 2, "sum": 1, "sum_squares": 1},
                    {"key": "b", "n": 2, "sum": 1, "sum_squares": 1},
                ],
            },
            ErrorCode.UNKNOWN_METRIC_TYPE,
        ),
    ],
)
def test_malformed_payloads(body, code):
    result = analyze_payload(body)
    assert code in {error.code for error in result.errors}
    json.dumps(result.to_dict(), allow_nan=False)


_json_values = json_documents(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=5),
    key_size=12, object_size=5,
)  # fmt: skip
_variant_objects = st.fixed_dictionaries(
    {"key": st.text(max_size=3) | st.none(), "n": _json_values, "sum": _json_values, "sum_squares": _json_values},
    optional={"covariate": _json_values, "denominator": _json_values},
)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    metric_type=st.sampled_from(["mean", "proportion", "ratio", "other"]),
    variants=st.lists(_variant_objects, max_size=4),
    extra=st.dictionaries(
        st.sampled_from(["alpha", "cuped", "sequential", "sequential_tuning", "correction"]), _json_values
    ),
)
def test_fuzzed_payloads_never_raise(metric_type, variants, extra):
    body = {"metric": {"type": metric_type}, "variants": variants, **extra}
    result = analyze_payload(body)
    json.dumps(result.to_dict(), allow_nan=False)
