"""Always-valid intervals and p-values (Waudby-Smith et al. 2023 asymptotic CS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.scorecard.stats import (
    SampleStats,
    VariantStats,
    always_valid_p_value,
    analyze,
    confidence_sequence_halfwidth,
    sequential_rho,
)


def test_rho_formula_eq_161():
    alpha, tuning = 0.05, 5000
    expected = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    assert sequential_rho(alpha, tuning) == pytest.approx(expected, rel=1e-12)


def test_halfwidth_formula_eq_9():
    variance, n, alpha, tuning = 0.0123, 6868, 0.05, 5000
    rho2 = sequential_rho(alpha, tuning) ** 2
    sigma2 = variance * n
    expected = math.sqrt(sigma2 * 2 * (n * rho2 + 1) / (n**2 * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))
    assert confidence_sequence_halfwidth(variance, n, alpha, tuning) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n_per_arm", [5, 50, 500, 5_000, 50_000, 5_000_000])
@pytest.mark.parametrize("tuning", [100.0, 5000.0, 1e6])
def test_sequential_interval_is_wider_than_fixed_horizon(n_per_arm, tuning):
    def variant(key, mean):
        return VariantStats(key, SampleStats(n_per_arm, mean * n_per_arm, (n_per_arm - 1) * 4.0 + n_per_arm * mean**2))

    variants = [variant("a", 1.0), variant("b", 1.1)]
    (fixed,) = analyze("mean", variants).comparisons
    (sequential,) = analyze("mean", variants, sequential=True, sequential_tuning=tuning).comparisons
    assert sequential.absolute_ci[0] < fixed.absolute_ci[0]
    assert sequential.absolute_ci[1] > fixed.absolute_ci[1]
    assert sequential.relative_ci[0] < fixed.relative_ci[0]
    assert sequential.relative_ci[1] > fixed.relative_ci[1]
    assert sequential.p_value >= fixed.p_value


@pytest.mark.parametrize("estimate", [0.0, 0.01, 0.05, 0.08, 0.2, -0.3])
def test_p_value_is_the_level_where_the_sequence_touches_zero(estimate):
    variance, n, alpha, tuning = 0.001, 4000, 0.05, 5000
    p_value = always_valid_p_value(estimate, variance, n, alpha, tuning)
    halfwidth = confidence_sequence_halfwidth(variance, n, alpha, tuning)
    assert (p_value < alpha) == (abs(estimate) > halfwidth)
    if 0 < p_value < 1:
        # At level p (rho kept at its alpha value) the halfwidth equals |estimate|.
        rho2 = sequential_rho(alpha, tuning) ** 2
        at_p = math.sqrt(
            variance * n * 2 * (n * rho2 + 1) / (n**2 * rho2) * math.log(math.sqrt(n * rho2 + 1) / p_value)
        )
        assert at_p == pytest.approx(abs(estimate), rel=1e-9)


def test_peeking_inflates_the_naive_test_but_not_the_sequential_one(normal_sums):
    rng = np.random.default_rng(31)
    runs, looks, batch, alpha = 1000, 20, 100, 0.05
    sums, squares = normal_sums(rng, batch, 0.0, 1.0, runs * looks * 2)
    sums = np.cumsum(sums.reshape(runs, 2, looks), axis=2)
    squares = np.cumsum(squares.reshape(runs, 2, looks), axis=2)
    naive_rejections = sequential_rejections = 0
    for run in range(runs):
        naive = sequential = False
        for look in range(looks):
            n = batch * (look + 1)
            variants = [
                VariantStats(k, SampleStats(n, float(sums[run, arm, look]), float(squares[run, arm, look])))
                for arm, k in enumerate(("a", "b"))
            ]
            naive = naive or analyze("mean", variants, alpha=alpha).comparisons[0].significant
            sequential = (
                sequential or analyze("mean", variants, alpha=alpha, sequential=True).comparisons[0].significant
            )
        naive_rejections += naive
        sequential_rejections += sequential
    assert naive_rejections / runs > 0.10
    assert sequential_rejections / runs <= alpha + 0.01
