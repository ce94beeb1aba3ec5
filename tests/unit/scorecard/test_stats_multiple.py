"""Holm and Benjamini-Hochberg adjusted p-values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as scipy_stats

from services.scorecard.stats import (
    Comparison,
    Correction,
    SampleStats,
    VariantStats,
    analyze,
    benjamini_hochberg_adjust,
    correct_comparisons,
    holm_adjust,
)


def test_holm_hand_computed_example():
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_bh_hand_computed_example():
    assert benjamini_hochberg_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])


@pytest.mark.parametrize("seed", range(5))
def test_bh_agrees_with_scipy_false_discovery_control(seed):
    p_values = np.random.default_rng(seed).uniform(0, 0.2, size=12)
    assert benjamini_hochberg_adjust(list(p_values)) == pytest.approx(
        list(scipy_stats.false_discovery_control(p_values, method="bh")), rel=1e-12
    )


def _holm_by_closed_testing_rule(p_values, alpha):
    """Reject H_i iff, stepping down through sorted p, every earlier p_(j) <= alpha/(m-j+1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    rejected = set()
    for rank, index in enumerate(order):
        if p_values[index] > alpha / (m - rank):
            break
        rejected.add(index)
    return rejected


@pytest.mark.parametrize("seed", range(5))
def test_holm_adjusted_p_values_reproduce_the_step_down_rule(seed):
    p_values = list(np.random.default_rng(seed).uniform(0, 0.05, size=8))
    adjusted = holm_adjust(p_values)
    for alpha in (0.01, 0.025, 0.05):
        assert {i for i, p in enumerate(adjusted) if p <= alpha} == _holm_by_closed_testing_rule(p_values, alpha)


def test_adjusted_p_values_never_fall_below_raw_and_stay_at_most_one():
    for p_values in itertools.product([0.001, 0.2, 0.9], repeat=3):
        for adjusted in (holm_adjust(p_values), benjamini_hochberg_adjust(p_values)):
            assert all(raw <= adj <= 1 for raw, adj in zip(p_values, adjusted, strict=True))


def test_correction_in_analyze_spans_all_treatments():
    def variant(key, mean):
        return VariantStats(key, SampleStats(400, 400 * mean, 399 * 1.0 + 400 * mean**2))

    variants = [variant("a", 0.0), variant("b", 0.15), variant("c", 0.02), variant("d", 0.01)]
    raw = analyze("mean", variants).comparisons
    holm = analyze("mean", variants, correction="holm").comparisons
    bh = analyze("mean", variants, correction="bh").comparisons
    raw_p = [c.p_value for c in raw]
    assert [c.p_value for c in holm] == pytest.approx(holm_adjust(raw_p))
    assert [c.p_value for c in bh] == pytest.approx(benjamini_hochberg_adjust(raw_p))
    assert all(c.significant == (c.p_value < 0.05) for c in holm + bh)


def test_correct_comparisons_across_metrics_skips_errors():
    comparisons = [
        Comparison("b", "a", p_value=0.01, significant=True),
        Comparison("b", "a"),  # an errored comparison has no p-value
        Comparison("c", "a", p_value=0.03, significant=True),
    ]
    corrected = correct_comparisons(comparisons, Correction.HOLM, alpha=0.05)
    assert [c.p_value for c in corrected] == [pytest.approx(0.02), None, pytest.approx(0.03)]
    assert [c.significant for c in corrected] == [True, False, True]
    strict = correct_comparisons(comparisons, Correction.HOLM, alpha=0.025)
    assert [c.significant for c in strict] == [True, False, False]
