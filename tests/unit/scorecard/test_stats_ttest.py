"""Welch t-test and delta-method relative effects: golden values and scipy agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from services.scorecard.stats import (
    AnalysisError,
    ErrorCode,
    SampleStats,
    TTestResult,
    VariantStats,
    analyze,
    delta_method_ratio_variance,
    delta_method_relative_variance,
    sample_mean,
    sample_variance,
    welch_dof,
    welch_t_test,
)


def test_golden_absolute_effect_matches_gbstats(golden_control, golden_treatment):
    result = analyze("mean", [golden_control, golden_treatment])
    (comparison,) = result.comparisons
    assert comparison.baseline_mean == pytest.approx(0.41, rel=1e-12)
    assert comparison.variant_mean == pytest.approx(0.70, rel=1e-12)
    assert comparison.absolute_effect == pytest.approx(0.29, abs=1e-4)
    assert comparison.absolute_ci == pytest.approx((0.04538, 0.53462), abs=1e-4)
    assert comparison.p_value == pytest.approx(0.02016, abs=1e-4)
    assert comparison.significant is True
    assert comparison.error is None


def test_golden_relative_effect_matches_gbstats(golden_control, golden_treatment):
    (comparison,) = analyze("mean", [golden_control, golden_treatment]).comparisons
    assert comparison.relative_effect == pytest.approx(0.70732, abs=1e-4)
    # gbstats' relative two-sided interval for the same inputs.
    assert comparison.relative_ci == pytest.approx((-0.03526, 1.44989), abs=1e-4)


def test_relative_interval_is_the_closed_form_delta_method(golden_control, golden_treatment):
    (comparison,) = analyze("mean", [golden_control, golden_treatment]).comparisons
    n_c, n_t = 3407, 3461
    var_c, var_t = 3.9**2 / n_c, 6.2**2 / n_t
    relative_variance = var_t / 0.41**2 + 0.70**2 * var_c / 0.41**4
    dof = (var_c + var_t) ** 2 / (var_c**2 / (n_c - 1) + var_t**2 / (n_t - 1))
    halfwidth = scipy_stats.t.ppf(0.975, dof) * math.sqrt(relative_variance)
    expected = (0.70 / 0.41 - 1 - halfwidth, 0.70 / 0.41 - 1 + halfwidth)
    assert comparison.relative_ci == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", range(8))
def test_welch_agrees_with_scipy_ttest_ind_from_stats(seed):
    rng = np.random.default_rng(seed)
    n_a, n_b = (int(v) for v in rng.integers(2, 5000, size=2))
    mean_a, mean_b = rng.normal(0, 3, size=2)
    sd_a, sd_b = rng.uniform(0.1, 10, size=2)
    baseline = SampleStats(n_a, mean_a * n_a, (n_a - 1) * sd_a**2 + n_a * mean_a**2)
    variant = SampleStats(n_b, mean_b * n_b, (n_b - 1) * sd_b**2 + n_b * mean_b**2)
    result = welch_t_test(baseline, variant, alpha=0.05)
    assert isinstance(result, TTestResult)
    expected = scipy_stats.ttest_ind_from_stats(mean_b, sd_b, n_b, mean_a, sd_a, n_a, equal_var=False)
    assert result.t_statistic == pytest.approx(expected.statistic, rel=1e-6)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)
    assert result.effect == pytest.approx(mean_b - mean_a, rel=1e-9, abs=1e-12)


def test_welch_agrees_with_scipy_on_raw_data():
    rng = np.random.default_rng(7)
    a, b = rng.exponential(2.0, 300), rng.exponential(2.4, 450)
    result = welch_t_test(SampleStats(a.size, a.sum(), float(a @ a)), SampleStats(b.size, b.sum(), float(b @ b)))
    assert isinstance(result, TTestResult)
    expected = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    low, high = result.ci
    assert (low, high) == pytest.approx(tuple(expected.confidence_interval(0.95)), rel=1e-6)


def test_analyze_p_value_equals_welch_t_test(golden_control, golden_treatment):
    direct = welch_t_test(golden_control.sample, golden_treatment.sample)
    assert isinstance(direct, TTestResult)
    (comparison,) = analyze("mean", [golden_control, golden_treatment]).comparisons
    assert comparison.p_value == pytest.approx(direct.p_value, rel=1e-12)
    assert comparison.absolute_ci == pytest.approx(direct.ci, rel=1e-12)


def test_welch_dof_reduces_to_pooled_dof_for_equal_groups():
    assert welch_dof(2.0, 50, 2.0, 50) == pytest.approx(98.0, rel=1e-12)


def test_welch_dof_with_one_constant_group_is_the_other_groups_dof():
    assert welch_dof(0.0, 10, 4.0, 30) == pytest.approx(29.0, rel=1e-12)


def test_sample_moments_from_sums_match_numpy():
    values = np.random.default_rng(1).normal(5, 2, size=1000)
    assert sample_mean(values.size, values.sum()) == pytest.approx(values.mean(), rel=1e-12)
    variance = sample_variance(values.size, values.sum(), float(values @ values))
    assert variance == pytest.approx(values.var(ddof=1), rel=1e-9)


def test_relative_variance_is_ratio_variance_without_covariance():
    direct = delta_method_relative_variance(2.0, 0.01, 2.5, 0.02)
    general = delta_method_ratio_variance(2.5, 2.0, 0.02, 0.01, 0.0)
    assert direct == pytest.approx(general, rel=1e-15)
    assert direct == pytest.approx(0.02 / 4 + 6.25 * 0.01 / 16, rel=1e-12)


@pytest.mark.parametrize(
    ("baseline", "code"),
    [
        (SampleStats(0, 0.0, 0.0), ErrorCode.EMPTY_VARIANT),
        (SampleStats(1, 3.0, 9.0), ErrorCode.TOO_FEW_UNITS),
    ],
)
def test_welch_t_test_returns_typed_errors(baseline, code):
    result = welch_t_test(baseline, SampleStats(10, 10.0, 20.0))
    assert isinstance(result, AnalysisError)
    assert result.code is code


def test_welch_zero_variance_is_an_error_not_an_exception():
    result = welch_t_test(SampleStats(5, 5.0, 5.0), SampleStats(5, 10.0, 20.0))
    assert isinstance(result, AnalysisError)
    assert result.code is ErrorCode.ZERO_VARIANCE


def test_proportion_metric_uses_the_same_welch_test():
    control = VariantStats("control", SampleStats(1000, 100.0, 100.0))
    treatment = VariantStats("treatment", SampleStats(1000, 130.0, 130.0))
    (comparison,) = analyze("proportion", [control, treatment]).comparisons
    p_c, p_t = 0.1, 0.13
    expected = scipy_stats.ttest_ind_from_stats(
        p_t,
        math.sqrt(p_t * (1 - p_t) * 1000 / 999),
        1000,
        p_c,
        math.sqrt(p_c * (1 - p_c) * 1000 / 999),
        1000,
        equal_var=False,
    )
    assert comparison.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    assert comparison.relative_effect == pytest.approx(0.3, rel=1e-12)
