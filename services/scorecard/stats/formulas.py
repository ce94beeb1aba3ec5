"""Closed-form building blocks, one formula per function, on plain floats.

Each function cites where its formula comes from. Inputs are assumed already validated
(see `validation.py`); the functions do not guard against n < 2 or zero denominators.
"""

from __future__ import annotations

import math

from scipy import special


def sample_mean(n: int, total: float) -> float:
    return total / n


def sample_variance(n: int, total: float, sum_squares: float) -> float:
    """Unbiased variance from sums: (sum y^2 - (sum y)^2 / n) / (n - 1).

    Clamped at 0: rounding in the sums can make a true zero slightly negative.
    """
    return max((sum_squares - total * total / n) / (n - 1), 0.0)


def sample_covariance(n: int, total_x: float, total_y: float, sum_products: float) -> float:
    """Unbiased covariance from sums: (sum xy - sum x * sum y / n) / (n - 1)."""
    return (sum_products - total_x * total_y / n) / (n - 1)


def welch_dof(variance_a: float, n_a: int, variance_b: float, n_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom (Welch 1947, eq. 9; Satterthwaite 1946).

    `variance_*` are per-unit variances, not variances of the means.
    """
    share_a = variance_a / n_a
    share_b = variance_b / n_b
    denominator = share_a * share_a / (n_a - 1) + share_b * share_b / (n_b - 1)
    return (share_a + share_b) ** 2 / denominator


def t_two_sided_p_value(t_statistic: float, dof: float) -> float:
    """P(|T| >= |t|) for Student's t with `dof` degrees of freedom."""
    return float(2.0 * special.stdtr(dof, -abs(t_statistic)))


def t_one_sided_upper_p_value(t_statistic: float, dof: float) -> float:
    """P(T >= t): the p-value of H0: theta <= theta0 against H1: theta > theta0."""
    return float(special.stdtr(dof, -t_statistic))


def t_quantile(probability: float, dof: float) -> float:
    return float(special.stdtrit(dof, probability))


def normal_quantile(probability: float) -> float:
    return float(special.ndtri(probability))


def delta_method_ratio_variance(
    numerator_mean: float,
    denominator_mean: float,
    numerator_variance: float,
    denominator_variance: float,
    covariance: float,
) -> float:
    """Var(A / B) for estimators A, B by the first-order delta method.

    Var(A/B) ~ Var(A)/mu_B^2 - 2 mu_A Cov(A,B)/mu_B^3 + mu_A^2 Var(B)/mu_B^4
    (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics", eq. 3).
    The variances and covariance are those of the estimators A and B themselves.
    """
    mu_b2 = denominator_mean * denominator_mean
    return (
        numerator_variance / mu_b2
        - 2.0 * numerator_mean * covariance / (mu_b2 * denominator_mean)
        + numerator_mean * numerator_mean * denominator_variance / (mu_b2 * mu_b2)
    )


def delta_method_relative_variance(
    baseline_mean: float,
    baseline_mean_variance: float,
    variant_mean: float,
    variant_mean_variance: float,
) -> float:
    """Var(variant_mean / baseline_mean - 1) for two independent means.

    The independent-samples special case of `delta_method_ratio_variance` (covariance 0),
    as in Deng et al. 2018, section 3.3, and GrowthBook gbstats `TTest.variance`.
    """
    return delta_method_ratio_variance(variant_mean, baseline_mean, variant_mean_variance, baseline_mean_variance, 0.0)


def ratio_unit_variance(
    ratio: float,
    denominator_mean: float,
    numerator_variance: float,
    denominator_variance: float,
    covariance: float,
) -> float:
    """Per-unit variance of the linearised ratio metric (y - ratio * d) / mean(d).

    n times the delta-method variance of sum(y) / sum(d) (Deng et al. 2018, eq. 3 with the
    unit-level moments; Deng et al. 2013 "CUPED", appendix B).
    """
    spread = numerator_variance - 2.0 * ratio * covariance + ratio * ratio * denominator_variance
    return max(spread, 0.0) / (denominator_mean * denominator_mean)


def ratio_variance_delta_method(
    n: int,
    ratio: float,
    denominator_mean: float,
    numerator_variance: float,
    denominator_variance: float,
    covariance: float,
) -> float:
    """Var(sum(y) / sum(d)) over n independent units, delta method with the y-d covariance.

    Deng et al. 2018, eq. 3, with the means' variances Var(y)/n, Var(d)/n, Cov(y,d)/n.
    """
    unit = ratio_unit_variance(ratio, denominator_mean, numerator_variance, denominator_variance, covariance)
    return unit / n


def standard_error(*variances_of_means: float) -> float:
    return math.sqrt(sum(variances_of_means))
