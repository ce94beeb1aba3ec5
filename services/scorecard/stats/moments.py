"""Per-variant moments on the scale the tests work on.

Mean and proportion metrics use the unit values directly. Ratio metrics are linearised
(Deng et al. 2018, section 2.2; Deng et al. 2013, appendix B): the variant's ratio
R = sum(y) / sum(d) behaves, to first order, like the mean of the per-unit values
L_i = R + (y_i - R d_i) / mean(d), so every later step (Welch, CUPED, delta-method relative
effect) treats mean and ratio metrics alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.scorecard.stats.errors import AnalysisError, ErrorCode
from services.scorecard.stats.formulas import (
    ratio_unit_variance,
    sample_covariance,
    sample_mean,
    sample_variance,
)
from services.scorecard.stats.sufficient import VariantStats


@dataclass(frozen=True)
class CovariateMoments:
    mean: float
    variance: float
    covariance: float  # cov(linearised metric, covariate) per unit


@dataclass(frozen=True)
class UnitMoments:
    """n units with point estimate `mean` and per-unit variance of the (linearised) metric."""

    n: int
    mean: float
    variance: float
    covariate: CovariateMoments | None

    @property
    def variance_of_mean(self) -> float:
        return self.variance / self.n


def mean_metric_moments(stats: VariantStats) -> UnitMoments:
    """Moments of a mean or proportion metric; requires n >= 2."""
    sample = stats.sample
    covariate = None
    if stats.covariate is not None:
        block = stats.covariate
        covariate = CovariateMoments(
            mean=sample_mean(sample.n, block.sum),
            variance=sample_variance(sample.n, block.sum, block.sum_squares),
            covariance=sample_covariance(sample.n, sample.sum, block.sum, block.sum_products),
        )
    return UnitMoments(
        n=sample.n,
        mean=sample_mean(sample.n, sample.sum),
        variance=sample_variance(sample.n, sample.sum, sample.sum_squares),
        covariate=covariate,
    )


def ratio_metric_moments(stats: VariantStats) -> UnitMoments | AnalysisError:
    """Moments of the linearised ratio metric; requires n >= 2 and a denominator block."""
    sample, denominator = stats.sample, stats.denominator
    if denominator is None:
        raise ValueError("ratio_metric_moments needs a denominator block (validate first)")
    if denominator.sum == 0:
        return AnalysisError(
            ErrorCode.DENOMINATOR_ZERO,
            f"variant {stats.key!r}: the denominator sums to 0, so the ratio is undefined",
        )
    n = sample.n
    ratio = sample.sum / denominator.sum
    denominator_mean = sample_mean(n, denominator.sum)
    variance = ratio_unit_variance(
        ratio,
        denominator_mean,
        sample_variance(n, sample.sum, sample.sum_squares),
        sample_variance(n, denominator.sum, denominator.sum_squares),
        sample_covariance(n, sample.sum, denominator.sum, denominator.sum_products),
    )
    return UnitMoments(n=n, mean=ratio, variance=variance, covariate=_ratio_covariate(stats, ratio))


def _ratio_covariate(stats: VariantStats, ratio: float) -> CovariateMoments | None:
    """cov(L, x) = (cov(y, x) - R cov(d, x)) / mean(d); needs sum(d * x) from the covariate."""
    block, denominator = stats.covariate, stats.denominator
    if block is None or denominator is None or block.denominator_products is None:
        return None
    n, sample = stats.sample.n, stats.sample
    covariance_yx = sample_covariance(n, sample.sum, block.sum, block.sum_products)
    covariance_dx = sample_covariance(n, denominator.sum, block.sum, block.denominator_products)
    return CovariateMoments(
        mean=sample_mean(n, block.sum),
        variance=sample_variance(n, block.sum, block.sum_squares),
        covariance=(covariance_yx - ratio * covariance_dx) / sample_mean(n, denominator.sum),
    )
