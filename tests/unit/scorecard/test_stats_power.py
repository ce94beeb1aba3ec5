"""Power calculator: closed forms, inverse consistency and a simulation of achieved power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from services.scorecard.stats import (
    AnalysisError,
    ErrorCode,
    InputError,
    SampleStats,
    VariantStats,
    analyze,
    minimum_detectable_effect,
    sample_size_per_variant,
)


def test_proportion_sample_size_closed_form():
    p, mde = 0.1, 0.1
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    expected = math.ceil(z**2 * (p * (1 - p) + 0.11 * 0.89) / (p * mde) ** 2)
    assert sample_size_per_variant(p, mde) == expected
    assert 14_000 < expected < 15_500  # the familiar ~14.7k for 10% -> 11%


def test_mean_sample_size_closed_form_and_cuped_and_bonferroni():
    base = sample_size_per_variant(50.0, 0.02, variance=400.0)
    z = scipy_stats.norm.ppf(0.975) + scipy_stats.norm.ppf(0.8)
    assert base == math.ceil(z**2 * 800.0 / 1.0**2)
    with_cuped = sample_size_per_variant(50.0, 0.02, variance=400.0, variance_reduction=0.5)
    assert isinstance(base, int) and isinstance(with_cuped, int)
    assert with_cuped == pytest.approx(base / 2, abs=1)
    three_arms = sample_size_per_variant(50.0, 0.02, variance=400.0, n_variants=3)
    z_bonferroni = scipy_stats.norm.ppf(1 - 0.025 / 2) + scipy_stats.norm.ppf(0.8)
    assert three_arms == math.ceil(z_bonferroni**2 * 800.0)


@pytest.mark.parametrize(("baseline", "variance"), [(0.1, None), (0.5, None), (50.0, 400.0)])
def test_mde_inverts_sample_size(baseline, variance):
    n = sample_size_per_variant(baseline, 0.05, variance=variance)
    assert isinstance(n, int)
    mde = minimum_detectable_effect(baseline, n, variance=variance)
    assert isinstance(mde, float)
    assert mde == pytest.approx(0.05, rel=1e-3)
    assert mde <= 0.05


def test_mde_unreachable_with_tiny_samples():
    result = minimum_detectable_effect(0.5, 2)
    assert isinstance(result, AnalysisError)
    assert result.code is ErrorCode.MDE_UNREACHABLE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"baseline_mean": 1.5, "relative_mde": 0.1},  # proportion above 1
        {"baseline_mean": 0.1, "relative_mde": -0.1},
        {"baseline_mean": 0.1, "relative_mde": 0.1, "alpha": 0.0},
        {"baseline_mean": 0.1, "relative_mde": 0.1, "power": 1.0},
        {"baseline_mean": 0.1, "relative_mde": 0.1, "n_variants": 1},
        {"baseline_mean": 0.1, "relative_mde": 0.1, "variance_reduction": 1.0},
        {"baseline_mean": 10.0, "relative_mde": 0.1, "variance": -1.0},
        {"baseline_mean": 0.6, "relative_mde": 1.0},  # the variant would exceed 100%
    ],
)
def test_invalid_power_parameters(kwargs):
    result = sample_size_per_variant(**kwargs)
    assert isinstance(result, InputError)
    assert result.code is ErrorCode.INVALID_PARAMETER


def test_sample_size_reaches_the_stated_power_in_simulation():
    rng = np.random.default_rng(17)
    p, mde, runs = 0.1, 0.1, 2000
    n = sample_size_per_variant(p, mde)
    assert isinstance(n, int)
    control = rng.binomial(n, p, runs)
    treatment = rng.binomial(n, p * (1 + mde), runs)
    detected = 0
    for c, t in zip(control, treatment, strict=True):
        variants = [
            VariantStats("c", SampleStats(n, float(c), float(c))),
            VariantStats("t", SampleStats(n, float(t), float(t))),
        ]
        detected += analyze("proportion", variants).comparisons[0].significant
    assert detected / runs == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize(("baseline", "mde"), [(0.1, 5e-324), (0.1, 1e-200), (1e-200, 1e-200)])
def test_an_effect_too_small_for_any_sample_is_an_input_error(baseline, mde):
    result = sample_size_per_variant(baseline, mde, variance=1.0)
    assert isinstance(result, InputError) and "too small for any sample size" in result.message
