"""Quantile metrics (e.g. p90 page load) over event values clustered by unit.

Method: Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics: A Practical
Guide with Novel Ideas" (KDD), section "Efficient variance estimation for quantile
metrics" (DKL-Q below). The sample quantile Q_p of N events satisfies, by the Bahadur
representation,

    Var(Q_p) ~= Var(F_hat(xi_p)) / f(xi_p)^2                                   (DKL-Q, Bahadur)

where F_hat(xi_p) = sum_u S_u / sum_u M_u is the share of events at or below the quantile,
S_u counting unit u's events <= xi_p and M_u its events. Events of one unit are correlated,
so F_hat is a ratio metric over independent units and its variance comes from the ratio
delta method (DKL eq. 3), not from p(1 - p) / N. The density f is never estimated directly:
the job reads the empirical quantile function at two probabilities p_L < p < p_U around p
(the "outer CI" of DKL-Q: the CI for F inverted through the empirical quantile
function), so f(xi_p) ~= (p_U - p_L) / (x_U - x_L). When the job picks p_L, p_U = p -+ z *
sd(F_hat) this gives back the paper's outer CI exactly (its half-width is z * sd(Q_p)).

Two independent variants: variances add for the difference; the relative difference uses the
delta method for a ratio of independent estimates (DKL, percent change). Intervals are normal
(z), like the paper's; units per variant are expected to number in the hundreds at least.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special

from services.scorecard.stats.errors import AnalysisError, ErrorCode
from services.scorecard.stats.formulas import (
    delta_method_relative_variance,
    normal_quantile,
    ratio_variance_delta_method,
    sample_covariance,
    sample_variance,
)
from services.scorecard.stats.results import AnalyzeResult, Comparison, ComparisonEstimates, Estimate
from services.scorecard.stats.ttest import sample_size_error, zero_variance_error

# The job reads the outer order statistics at this (two-sided) level; the engine's alpha may
# differ, because the window is only used to estimate the density.
OUTER_WINDOW_ALPHA = 0.05


@dataclass(frozen=True)
class QuantileStats:
    """What the metrics job emits per (experiment, metric, variant) for a quantile metric.

    Order statistics use the inverse empirical CDF x_(k), k = max(1, ceil(n_events * q)):
    the smallest event value v with F_hat(v) >= q (Spark's `percentile_approx` definition;
    the exact one is a rank over the sorted values).

    - `probability`: p, e.g. 0.9 for p90.
    - `n_units`: units in the variant (units without events count: S_u = M_u = 0).
    - `n_events`: N = sum_u M_u.
    - `value`: x_(ceil(N p)), the sample quantile.
    - `lower_probability`, `upper_probability`: p_L < p < p_U at which the outer order
      statistics were read; `outer_window_probabilities` gives the recommended ones
      (p -+ z_0.975 sqrt(p (1 - p) / N), known once N is counted).
    - `lower_value`, `upper_value`: x_(ceil(N p_L)) and x_(ceil(N p_U)).
    - `events_below`: sum_u S_u, S_u = unit u's events with value <= `value`.
    - `events_below_squares`: sum_u S_u^2; `events_squares`: sum_u M_u^2;
      `events_products`: sum_u S_u M_u.

    Unlike the mean blocks these do not add: the indicator sums depend on the quantile of the
    whole variant, so the job computes them in a second pass (per-unit counts of events <=
    `value`, then sums over units) over the variant's full data, not per partition or day.
    """

    probability: float
    n_units: int
    n_events: int
    value: float
    lower_probability: float
    upper_probability: float
    lower_value: float
    upper_value: float
    events_below: float
    events_below_squares: float
    events_squares: float
    events_products: float


@dataclass(frozen=True)
class QuantileEstimate:
    """One variant's quantile with its delta-method variance and the pieces behind it."""

    value: float
    variance: float
    share_below: float
    share_below_variance: float
    density: float


@dataclass(frozen=True)
class QuantileTestResult:
    baseline: QuantileEstimate
    variant: QuantileEstimate
    effect: float
    standard_error: float
    p_value: float
    ci: tuple[float, float]
    relative_effect: float | None
    relative_ci: tuple[float, float] | None
    relative_standard_error: float | None = None


def outer_window_probabilities(
    probability: float, n_events: int, alpha: float = OUTER_WINDOW_ALPHA
) -> tuple[float, float]:
    """p -+ z_{1-alpha/2} sqrt(p (1 - p) / N): the binomial CI for F at xi_p (DKL-Q).

    The iid width keeps the job to one pass for the order statistics; the clustering enters
    through `share_below_variance`, so the density estimate does not need it.
    """
    halfwidth = normal_quantile(1.0 - alpha / 2.0) * math.sqrt(probability * (1.0 - probability) / n_events)
    return (probability - halfwidth, probability + halfwidth)


def minimum_events(probability: float, alpha: float = OUTER_WINDOW_ALPHA) -> int:
    """Fewest events for which the outer window p -+ z sqrt(p (1 - p) / N) lies inside (0, 1).

    p - z sqrt(p (1 - p) / N) > 0  <=>  N > z^2 (1 - p) / p, and symmetrically for 1 - p.
    """
    z = normal_quantile(1.0 - alpha / 2.0)
    odds = max(probability / (1.0 - probability), (1.0 - probability) / probability)
    return math.floor(z * z * odds) + 1


def share_below_variance(stats: QuantileStats) -> float:
    """Var(F_hat(xi_p)) with F_hat = sum S_u / sum M_u over independent units.

    The ratio delta method (DKL eq. 3) on unit-level moments of (S_u, M_u); with one event per
    unit it reduces to F_hat (1 - F_hat) / (N - 1), the binomial variance up to N / (N - 1).
    """
    n = stats.n_units
    share = stats.events_below / stats.n_events
    return ratio_variance_delta_method(
        n,
        share,
        stats.n_events / n,
        sample_variance(n, stats.events_below, stats.events_below_squares),
        sample_variance(n, stats.n_events, stats.events_squares),
        sample_covariance(n, stats.events_below, stats.n_events, stats.events_products),
    )


def outer_density(stats: QuantileStats) -> float:
    """f(xi_p) ~= (p_U - p_L) / (x_U - x_L): the slope of the empirical CDF across the outer
    window (DKL-Q), infinite when the window holds a single value (a point mass)."""
    spread = stats.upper_value - stats.lower_value
    if spread <= 0.0:
        return math.inf
    return (stats.upper_probability - stats.lower_probability) / spread


def quantile_variance(share_variance: float, density: float) -> float:
    """Var(Q_p) ~= Var(F_hat(xi_p)) / f(xi_p)^2 (DKL-Q, Bahadur representation); infinite when the
    density estimate underflows to 0 (values spread over ~1e150 around the quantile)."""
    squared = density * density
    return share_variance / squared if squared > 0.0 else math.inf


def quantile_estimate(stats: QuantileStats) -> QuantileEstimate:
    share_variance = share_below_variance(stats)
    density = outer_density(stats)
    return QuantileEstimate(
        value=stats.value,
        variance=quantile_variance(share_variance, density),
        share_below=stats.events_below / stats.n_events,
        share_below_variance=share_variance,
        density=density,
    )


def quantile_sample_error(key: str, stats: QuantileStats) -> AnalysisError | None:
    """The typed failure for a variant too small for a quantile interval, if any."""
    if stats.n_events == 0:
        return AnalysisError(ErrorCode.EMPTY_VARIANT, f"variant {key!r} has no events yet")
    unit_error = sample_size_error(key, stats.n_units)
    if unit_error is not None:
        return unit_error
    needed = minimum_events(stats.probability)
    if stats.n_events < needed:
        # No dedicated events code exists in ErrorCode; too few events is too few units' data.
        return AnalysisError(
            ErrorCode.TOO_FEW_UNITS,
            f"variant {key!r} has {stats.n_events} events; the p{stats.probability * 100:g} interval "
            f"needs at least {needed}",
        )
    return None


def quantile_test(
    baseline: QuantileStats,
    variant: QuantileStats,
    alpha: float = 0.05,
    *,
    baseline_key: str = "baseline",
    variant_key: str = "variant",
) -> QuantileTestResult | AnalysisError:
    """Difference Q_variant - Q_baseline and Q_variant / Q_baseline - 1 with normal intervals.

    Independent variants: Var(difference) = Var(Q_b) + Var(Q_v); the relative effect's
    variance is the delta method for a ratio of independent estimates (DKL, percent change).
    The keys only name the variants in error messages.
    """
    if baseline.probability != variant.probability:
        raise ValueError(f"quantiles differ: {baseline.probability} and {variant.probability}")
    for key, stats in ((baseline_key, baseline), (variant_key, variant)):
        error = quantile_sample_error(key, stats)
        if error is not None:
            return error
    estimate_b = quantile_estimate(baseline)
    estimate_v = quantile_estimate(variant)
    variance = estimate_b.variance + estimate_v.variance
    if variance <= 0.0:
        return zero_variance_error()
    if not math.isfinite(variance):
        message = "the event values around the quantile are too spread out to estimate their density"
        return AnalysisError(ErrorCode.DENSITY_ZERO, f"{message}, so the interval is undefined")
    z = normal_quantile(1.0 - alpha / 2.0)
    effect = estimate_v.value - estimate_b.value
    se = math.sqrt(variance)
    relative_effect: float | None = None
    relative_ci: tuple[float, float] | None = None
    relative_se: float | None = None
    if estimate_b.value != 0.0:
        relative_effect = estimate_v.value / estimate_b.value - 1.0
        relative_variance = delta_method_relative_variance(
            estimate_b.value, estimate_b.variance, estimate_v.value, estimate_v.variance
        )
        if math.isfinite(relative_variance) and relative_variance >= 0.0:  # else the relative effect has no interval
            relative_se = math.sqrt(relative_variance)
            relative_ci = (relative_effect - z * relative_se, relative_effect + z * relative_se)
    return QuantileTestResult(
        baseline=estimate_b,
        variant=estimate_v,
        effect=effect,
        standard_error=se,
        p_value=float(2.0 * special.ndtr(-abs(effect) / se)),
        ci=(effect - z * se, effect + z * se),
        relative_effect=relative_effect,
        relative_ci=relative_ci,
        relative_standard_error=relative_se,
    )


def compare_quantiles(
    baseline_key: str,
    baseline: QuantileStats,
    variant_key: str,
    variant: QuantileStats,
    alpha: float = 0.05,
) -> Comparison:
    """The scorecard's `Comparison` for a quantile metric: per-variant "means" are the quantiles.

    A baseline quantile of 0 leaves the relative effect empty (no error: the difference stands).
    """
    result = quantile_test(baseline, variant, alpha, baseline_key=baseline_key, variant_key=variant_key)
    return _comparison(baseline_key, variant_key, result, alpha)


def _comparison(
    baseline_key: str, variant_key: str, result: QuantileTestResult | AnalysisError, alpha: float
) -> Comparison:
    if isinstance(result, AnalysisError):
        return Comparison(variant=variant_key, baseline=baseline_key, error=result)
    return Comparison(
        variant=variant_key,
        baseline=baseline_key,
        baseline_mean=result.baseline.value,
        variant_mean=result.variant.value,
        absolute_effect=result.effect,
        absolute_ci=result.ci,
        relative_effect=result.relative_effect,
        relative_ci=result.relative_ci,
        p_value=result.p_value,
        significant=result.p_value < alpha,
    )


def _estimates(variant_key: str, result: QuantileTestResult) -> ComparisonEstimates:
    """The standard errors behind a quantile comparison, for guardrail tests: the intervals are
    normal, which the t-based guardrail test reproduces with infinite degrees of freedom."""
    relative = None
    if result.relative_effect is not None and result.relative_standard_error is not None:
        relative = Estimate(result.relative_effect, result.relative_standard_error, math.inf)
    return ComparisonEstimates(variant_key, Estimate(result.effect, result.standard_error, math.inf), relative)


def analyze_quantiles(variants: Sequence[tuple[str, QuantileStats | None]], alpha: float = 0.05) -> AnalyzeResult:
    """Every variant after the first against the first, as `analyze` does for the other metric
    types. A variant without a quantile block (no events yet) gives its comparison an
    `empty_variant` error. No CUPED and no sequential intervals: the quantile's interval is
    always the fixed-horizon normal one."""
    baseline_key, baseline = variants[0]
    comparisons: list[Comparison] = []
    estimates: list[ComparisonEstimates] = []
    for variant_key, variant in variants[1:]:
        if baseline is None or variant is None:
            missing = baseline_key if baseline is None else variant_key
            error = AnalysisError(ErrorCode.EMPTY_VARIANT, f"variant {missing!r} has no events yet")
            comparisons.append(Comparison(variant=variant_key, baseline=baseline_key, error=error))
            continue
        result = quantile_test(baseline, variant, alpha, baseline_key=baseline_key, variant_key=variant_key)
        comparisons.append(_comparison(baseline_key, variant_key, result, alpha))
        if isinstance(result, QuantileTestResult):
            estimates.append(_estimates(variant_key, result))
    return AnalyzeResult(comparisons=comparisons, estimates=estimates)
