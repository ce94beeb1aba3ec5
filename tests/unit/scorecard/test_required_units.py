"""The sample size the scorecard asks for a primary metric: a ratio metric is powered on its ratio
and the per-unit variance of its linearisation (Deng et al. 2018), not on the numerator per unit."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from services.common.registry.models import AnalysisPlan
from services.scorecard.scorecard import MetricPlan, analyze_plan, baseline_moments, required_units
from services.scorecard.stats import Role
from services.scorecard.stats.sufficient import DenominatorStats, SampleStats, VariantStats

# Four units: numerators y = 10, 15, 12, 13 over denominators d = 2, 3, 2, 3.
# R = 50 / 10 = 5, mean(d) = 2.5, var(y) = 13/3, var(d) = 1/3, cov(y, d) = 1 (unbiased), so the
# linearised per-unit variance is (13/3 - 2 * 5 * 1 + 25 * 1/3) / 2.5**2 = (8/3) / 6.25 = 32/75.
RATIO_UNITS = SampleStats(4, 50.0, 638.0), DenominatorStats(10.0, 26.0, 128.0)


def ratio_variant(key: str) -> VariantStats:
    sample, denominator = RATIO_UNITS
    return VariantStats(key, sample, denominator=denominator)


def test_a_ratio_baseline_is_its_ratio_and_linearised_variance() -> None:
    mean, variance = baseline_moments("ratio", ratio_variant("control")) or (None, None)
    assert mean == pytest.approx(5.0, rel=1e-12)
    assert variance == pytest.approx(32 / 75, rel=1e-12)


def test_a_primary_ratio_metric_asks_for_the_closed_form_sample_size() -> None:
    plan = MetricPlan("revenue_per_session", Role.PRIMARY, "ratio", True,
                      [ratio_variant("control"), ratio_variant("treatment")])  # fmt: skip
    analysis = AnalysisPlan(minimum_detectable_effect=0.1, cuped=False)
    z = NormalDist().inv_cdf(1 - 0.05 / 2) + NormalDist().inv_cdf(0.8)
    expected = math.ceil(z * z * 2 * (32 / 75) / (0.1 * 5.0) ** 2)  # 26.8 -> 27
    assert expected == 27  # the numerator per unit (mean 12.5, variance 3.25) would ask for 33
    assert required_units(plan, analyze_plan(plan, analysis), analysis) == expected


def test_mean_and_proportion_baselines_keep_their_per_unit_moments() -> None:
    sample = SampleStats(4, 50.0, 638.0)
    assert baseline_moments("mean", VariantStats("c", sample)) == (12.5, pytest.approx(3.25, rel=1e-12))
    assert baseline_moments("proportion", VariantStats("c", SampleStats(4, 1.0, 1.0))) == (0.25, None)


def test_a_ratio_baseline_without_a_usable_denominator_asks_for_nothing() -> None:
    assert baseline_moments("ratio", VariantStats("c", SampleStats(4, 1.0, 1.0))) is None
    zero = VariantStats("c", SampleStats(4, 1.0, 1.0), denominator=DenominatorStats(0.0, 0.0, 0.0))
    assert baseline_moments("ratio", zero) is None
