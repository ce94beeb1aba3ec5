"""CUPED: pooled theta, theta = 0 equals the plain test, and simulated variance reduction."""

from __future__ import annotations

import numpy as np
import pytest

from services.scorecard.stats import (
    CovariateStats,
    SampleStats,
    UnitMoments,
    VariantStats,
    analyze,
    cuped_theta,
    mean_metric_moments,
)


def test_pooled_theta_matches_within_variant_regression(stats_from_arrays):
    rng = np.random.default_rng(5)
    arms = []
    for shift, size in ((0.0, 300), (1.0, 500), (-2.0, 200)):
        x = rng.normal(shift, 1.5, size)
        y = 0.6 * x + rng.normal(shift * 3, 1.0, size)
        arms.append((x, y))
    # Reference: slope of y on x after centring each variant separately.
    x_centred = np.concatenate([x - x.mean() for x, _ in arms])
    y_centred = np.concatenate([y - y.mean() for _, y in arms])
    expected = float(x_centred @ y_centred / (x_centred @ x_centred))
    moments = [mean_metric_moments(stats_from_arrays(f"v{i}", y, x)) for i, (x, y) in enumerate(arms)]
    assert cuped_theta(moments) == pytest.approx(expected, rel=1e-9)
    result = analyze("mean", [stats_from_arrays(f"v{i}", y, x) for i, (x, y) in enumerate(arms)], cuped=True)
    assert [c.cuped.theta for c in result.comparisons] == pytest.approx([expected] * 2, rel=1e-9)


def _uncorrelated_covariate(sample: SampleStats, x_sum: float, x_sum_squares: float):
    # sum_products = sum(y) sum(x) / n makes the within-variant covariance exactly 0.
    return CovariateStats(x_sum, x_sum_squares, sample.sum * x_sum / sample.n)


def test_cuped_with_theta_zero_equals_the_plain_test(golden_control, golden_treatment):
    control = VariantStats(
        "control", golden_control.sample, _uncorrelated_covariate(golden_control.sample, 500.0, 9000.0)
    )
    treatment = VariantStats(
        "treatment", golden_treatment.sample, _uncorrelated_covariate(golden_treatment.sample, 700.0, 9900.0)
    )
    for sequential in (False, True):
        (plain,) = analyze("mean", [control, treatment], sequential=sequential).comparisons
        (adjusted,) = analyze("mean", [control, treatment], cuped=True, sequential=sequential).comparisons
        assert adjusted.cuped.applied is True
        assert adjusted.cuped.theta == pytest.approx(0.0, abs=1e-12)
        assert adjusted.cuped.variance_reduction == pytest.approx(0.0, abs=1e-12)
        assert adjusted.absolute_effect == pytest.approx(plain.absolute_effect, rel=1e-12)
        assert adjusted.absolute_ci == pytest.approx(plain.absolute_ci, rel=1e-9)
        assert adjusted.relative_ci == pytest.approx(plain.relative_ci, rel=1e-9)
        assert adjusted.p_value == pytest.approx(plain.p_value, rel=1e-9)


def test_cuped_not_applied_without_covariates(golden_control, golden_treatment):
    (comparison,) = analyze("mean", [golden_control, golden_treatment], cuped=True).comparisons
    assert comparison.cuped.applied is False
    assert comparison.cuped.theta is None
    assert "no covariate" in (comparison.cuped.reason or "")


def test_cuped_not_applied_when_covariate_is_constant():
    sample = SampleStats(100, 50.0, 400.0)
    constant = CovariateStats(200.0, 400.0, 100.0)  # x == 2 for every unit
    variants = [VariantStats("a", sample, constant), VariantStats("b", sample, constant)]
    (comparison,) = analyze("mean", variants, cuped=True).comparisons
    assert comparison.cuped.applied is False
    assert "no variance" in (comparison.cuped.reason or "")
    assert comparison.error is None


def test_theta_is_none_for_moments_without_covariate():
    assert cuped_theta([UnitMoments(10, 1.0, 1.0, None)]) is None


def test_cuped_simulation_reduces_variance_by_rho_squared_and_keeps_coverage(stats_from_arrays):
    rng = np.random.default_rng(2024)
    runs, n, rho, effect, level = 2000, 1000, 0.7, 0.1, 10.0
    reductions, covered_abs, covered_rel, adjusted, unadjusted = [], 0, 0, [], []
    for _ in range(runs):
        x = rng.standard_normal((2, n))
        y = level + rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((2, n))
        y[1] += effect
        variants = [stats_from_arrays("control", y[0], x[0]), stats_from_arrays("treatment", y[1], x[1])]
        (comparison,) = analyze("mean", variants, cuped=True).comparisons
        reductions.append(comparison.cuped.variance_reduction)
        low, high = comparison.absolute_ci
        covered_abs += low <= effect <= high
        low, high = comparison.relative_ci
        covered_rel += low <= effect / level <= high
        adjusted.append(comparison.absolute_effect)
        unadjusted.append(y[1].mean() - y[0].mean())
    assert np.mean(reductions) == pytest.approx(rho**2, abs=0.03)
    assert 0.93 <= covered_abs / runs <= 0.97
    assert 0.93 <= covered_rel / runs <= 0.97
    # The reduction is real, not only reported: the adjusted estimates vary less.
    achieved = 1 - np.var(adjusted) / np.var(unadjusted)
    assert achieved == pytest.approx(rho**2, abs=0.05)
    assert np.mean(adjusted) == pytest.approx(effect, abs=0.005)
