"""CUPED: variance reduction with a pre-exposure covariate (Deng, Xu, Kohavi & Walker 2013).

One theta is pooled over ALL variants from within-variant centred sums, so every comparison
of the experiment uses the same adjustment and the covariate's treatment-independence keeps
the adjusted difference unbiased. theta is treated as known (its estimation error is
O(1/n), Deng et al. 2013 section 3.3).
"""

from __future__ import annotations

from collections.abc import Sequence

from services.scorecard.stats.moments import UnitMoments


def cuped_theta(moments: Sequence[UnitMoments]) -> float | None:
    """Pooled theta = sum_v S_xy,v / sum_v S_xx,v (Deng et al. 2013, eq. 3).

    S_xy,v and S_xx,v are the within-variant centred cross-product and covariate sums,
    (n_v - 1) * cov_v(y, x) and (n_v - 1) * var_v(x). None when there is no covariate
    variance to regress on, or when a variant lacks a covariate.
    """
    centred_products = 0.0
    centred_squares = 0.0
    for variant in moments:
        if variant.covariate is None:
            return None
        centred_products += (variant.n - 1) * variant.covariate.covariance
        centred_squares += (variant.n - 1) * variant.covariate.variance
    if centred_squares <= 0:
        return None
    return centred_products / centred_squares


def cuped_adjusted_variance(variance: float, covariate_variance: float, covariance: float, theta: float) -> float:
    """Var(y - theta x) = var(y) - 2 theta cov(y, x) + theta^2 var(x) (Deng et al. 2013, eq. 4)."""
    return max(variance - 2.0 * theta * covariance + theta * theta * covariate_variance, 0.0)


def cuped_adjusted_difference(
    baseline_mean: float,
    baseline_covariate_mean: float,
    variant_mean: float,
    variant_covariate_mean: float,
    theta: float,
) -> float:
    """(mean_v - theta xbar_v) - (mean_b - theta xbar_b) (Deng et al. 2013, eq. 2 per arm)."""
    return (variant_mean - baseline_mean) - theta * (variant_covariate_mean - baseline_covariate_mean)


def cuped_baseline_covariance(baseline_variance: float, baseline_covariance: float, theta: float, n: int) -> float:
    """Cov(adjusted difference, baseline mean) = -(var(y) - theta cov(y, x)) / n.

    Needed by the delta-method variance of the relative effect adjusted_difference /
    baseline_mean; with theta = 0 it reduces to the plain ratio-of-means formula.
    """
    return -(baseline_variance - theta * baseline_covariance) / n


def cuped_variance_reduction(adjusted_variance: float, unadjusted_variance: float) -> float:
    """Achieved reduction 1 - Var(adjusted) / Var(unadjusted); about rho^2 for one covariate."""
    return 1.0 - adjusted_variance / unadjusted_variance
