"""Ratio metrics: delta-method variance with the covariance term, against simulation."""

from __future__ import annotations

import numpy as np
import pytest

from services.scorecard.stats import (
    ErrorCode,
    VariantStats,
    analyze,
    ratio_variance_delta_method,
    sample_covariance,
    sample_variance,
)


def _units(rng: np.random.Generator, shape: tuple[int, ...], rate: float = 0.3):
    """Sessions and purchases per unit, positively correlated through unit activity."""
    activity = rng.gamma(2.0, 1.0, shape)
    sessions = 1.0 + rng.poisson(2.0 * activity)
    purchases = rng.poisson(rate * sessions * activity).astype(float)
    return purchases, sessions, activity


def _predicted_variance(purchases: np.ndarray, sessions: np.ndarray) -> float:
    n = purchases.size
    return ratio_variance_delta_method(
        n,
        purchases.sum() / sessions.sum(),
        sessions.mean(),
        sample_variance(n, purchases.sum(), float(purchases @ purchases)),
        sample_variance(n, sessions.sum(), float(sessions @ sessions)),
        sample_covariance(n, purchases.sum(), sessions.sum(), float(purchases @ sessions)),
    )


def test_delta_method_variance_matches_repeated_sampling():
    rng = np.random.default_rng(99)
    purchases, sessions, _ = _units(rng, (4000, 500))
    ratios = purchases.sum(axis=1) / sessions.sum(axis=1)
    predicted = np.mean([_predicted_variance(p, s) for p, s in zip(purchases, sessions, strict=True)])
    assert predicted == pytest.approx(ratios.var(ddof=1), rel=0.08)


def test_dropping_the_covariance_term_would_be_wrong():
    rng = np.random.default_rng(100)
    purchases, sessions, _ = _units(rng, (1, 20_000))
    p, s = purchases[0], sessions[0]
    with_covariance = _predicted_variance(p, s)
    n, ratio = p.size, p.sum() / s.sum()
    without = ratio_variance_delta_method(n, ratio, s.mean(), p.var(ddof=1), s.var(ddof=1), 0.0)
    assert without > 1.3 * with_covariance


def test_ratio_analysis_uses_linearised_moments(stats_from_arrays):
    rng = np.random.default_rng(4)
    (p_c, p_t), (s_c, s_t), _ = _units(rng, (2, 3000))
    variants = [
        stats_from_arrays("control", p_c, denominator=s_c),
        stats_from_arrays("treatment", p_t, denominator=s_t),
    ]
    (comparison,) = analyze("ratio", variants).comparisons
    r_c, r_t = p_c.sum() / s_c.sum(), p_t.sum() / s_t.sum()
    assert comparison.baseline_mean == pytest.approx(r_c, rel=1e-12)
    assert comparison.variant_mean == pytest.approx(r_t, rel=1e-12)
    assert comparison.absolute_effect == pytest.approx(r_t - r_c, rel=1e-9)
    se = np.sqrt(_predicted_variance(p_c, s_c) + _predicted_variance(p_t, s_t))
    low, high = comparison.absolute_ci
    assert (high - low) / 2 == pytest.approx(1.96 * se, rel=2e-3)


def test_ratio_cuped_needs_denominator_products(stats_from_arrays):
    rng = np.random.default_rng(8)
    (p_c, p_t), (s_c, s_t), (a_c, a_t) = _units(rng, (2, 500))
    variants = [stats_from_arrays("control", p_c, a_c, s_c), stats_from_arrays("treatment", p_t, a_t, s_t)]
    stripped = [
        VariantStats(
            v.key,
            v.sample,
            v.covariate.__class__(v.covariate.sum, v.covariate.sum_squares, v.covariate.sum_products),
            v.denominator,
        )
        for v in variants
    ]
    (comparison,) = analyze("ratio", stripped, cuped=True).comparisons
    assert comparison.cuped.applied is False
    assert "denominator_products" in (comparison.cuped.reason or "")
    (applied,) = analyze("ratio", variants, cuped=True).comparisons
    assert applied.cuped.applied is True


def test_ratio_cuped_simulation_is_unbiased_with_nominal_coverage(stats_from_arrays):
    rng = np.random.default_rng(77)
    runs, n = 1000, 800
    covered, estimates, reductions = 0, [], []
    rate = 0.3
    for _ in range(runs):
        purchases, sessions, activity = _units(rng, (2, n), rate)
        # Pre-period purchases of the same units: a covariate correlated with the metric.
        pre = rng.poisson(rate * sessions * activity).astype(float)
        variants = [
            stats_from_arrays("control", purchases[0], pre[0], sessions[0]),
            stats_from_arrays("treatment", purchases[1], pre[1], sessions[1]),
        ]
        (comparison,) = analyze("ratio", variants, cuped=True).comparisons
        assert comparison.cuped.applied is True
        low, high = comparison.absolute_ci
        covered += low <= 0.0 <= high  # both arms share the same true ratio
        estimates.append(comparison.absolute_effect)
        reductions.append(comparison.cuped.variance_reduction)
    assert 0.93 <= covered / runs <= 0.97
    assert abs(np.mean(estimates)) < 3 * np.std(estimates) / np.sqrt(runs)
    assert np.mean(reductions) > 0.1


def test_ratio_with_zero_denominator_is_a_typed_error(stats_from_arrays):
    zeros = np.zeros(10)
    values = np.zeros(10)
    ok_p, ok_s = np.arange(10.0), np.arange(1.0, 11.0)
    variants = [
        stats_from_arrays("control", values, denominator=zeros),
        stats_from_arrays("treatment", ok_p, denominator=ok_s),
    ]
    (comparison,) = analyze("ratio", variants).comparisons
    assert comparison.error is not None
    assert comparison.error.code is ErrorCode.DENOMINATOR_ZERO
