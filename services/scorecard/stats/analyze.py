"""The engine behind POST /v1/analyze: every treatment variant against the first (baseline).

Pipeline: validate -> per-variant (linearised) moments -> one pooled CUPED theta -> per
comparison an absolute effect (Welch t, or an asymptotic confidence sequence when
sequential) and a relative effect by the delta method -> optional p-value correction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from services.scorecard.stats.cuped import (
    cuped_adjusted_difference,
    cuped_adjusted_variance,
    cuped_baseline_covariance,
    cuped_theta,
    cuped_variance_reduction,
)
from services.scorecard.stats.errors import AnalysisError, ErrorCode
from services.scorecard.stats.formulas import (
    delta_method_ratio_variance,
    delta_method_relative_variance,
    welch_dof,
)
from services.scorecard.stats.moments import UnitMoments, mean_metric_moments, ratio_metric_moments
from services.scorecard.stats.multiple import Correction, correct_comparisons
from services.scorecard.stats.results import (
    AnalyzeResult,
    Comparison,
    ComparisonEstimates,
    CupedSummary,
    Estimate,
)
from services.scorecard.stats.sequential import (
    DEFAULT_SEQUENTIAL_TUNING,
    always_valid_p_value,
    confidence_sequence_halfwidth,
)
from services.scorecard.stats.sufficient import VariantStats
from services.scorecard.stats.ttest import (
    sample_size_error,
    t_confidence_interval,
    t_two_sided_p_value,
    zero_variance_error,
)
from services.scorecard.stats.validation import (
    DEFAULT_MAX_VARIANTS,
    MetricType,
    validate_analysis_request,
    validate_parameters,
)


@dataclass(frozen=True)
class InferenceSettings:
    alpha: float
    sequential: bool
    sequential_tuning: float


@dataclass(frozen=True)
class CupedPlan:
    """The experiment-wide CUPED decision: theta applies to every comparison, or a reason."""

    theta: float | None
    reason: str | None


def analyze(
    metric_type: str,
    variants: Sequence[VariantStats],
    *,
    alpha: float = 0.05,
    cuped: bool = False,
    sequential: bool = False,
    sequential_tuning: float = DEFAULT_SEQUENTIAL_TUNING,
    correction: str = "none",
    max_variants: int = DEFAULT_MAX_VARIANTS,
) -> AnalyzeResult:
    """Compare every variant after the first with the first; see docs/api.md `/v1/analyze`."""
    errors = validate_parameters(alpha, sequential_tuning, correction)
    errors += validate_analysis_request(metric_type, variants, max_variants)
    if errors:
        return AnalyzeResult(errors=errors)
    kind = MetricType(metric_type)
    moments = [_variant_moments(kind, variant) for variant in variants]
    plan = _cuped_plan(kind, variants, moments) if cuped else CupedPlan(None, None)
    settings = InferenceSettings(alpha, sequential, sequential_tuning)
    comparisons: list[Comparison] = []
    estimates: list[ComparisonEstimates] = []
    for variant, variant_moments in zip(variants[1:], moments[1:], strict=True):
        comparison, estimate = _compare(
            variants[0].key, moments[0], variant.key, variant_moments, plan, cuped, settings
        )
        comparisons.append(comparison)
        if estimate is not None:
            estimates.append(estimate)
    comparisons = correct_comparisons(comparisons, Correction(correction), alpha)
    return AnalyzeResult(comparisons=comparisons, estimates=estimates)


def _variant_moments(kind: MetricType, variant: VariantStats) -> UnitMoments | AnalysisError:
    error = sample_size_error(variant.key, variant.sample.n)
    if error is not None:
        return error
    if kind is MetricType.RATIO:
        return ratio_metric_moments(variant)
    return mean_metric_moments(variant)


def _cuped_plan(
    kind: MetricType,
    variants: Sequence[VariantStats],
    moments: Sequence[UnitMoments | AnalysisError],
) -> CupedPlan:
    for variant in variants:
        if variant.covariate is None:
            return CupedPlan(None, f"variant {variant.key!r} has no covariate block")
        if kind is MetricType.RATIO and variant.covariate.denominator_products is None:
            return CupedPlan(
                None,
                (
                    f"variant {variant.key!r}: CUPED for a ratio metric needs "
                    "covariate.denominator_products (sum of denominator x covariate)"
                ),
            )
    usable = [item for item in moments if isinstance(item, UnitMoments)]
    theta = cuped_theta(usable) if usable else None
    if theta is None:
        return CupedPlan(None, "the covariate has no variance within variants")
    return CupedPlan(theta, None)


def _compare(
    baseline_key: str,
    baseline: UnitMoments | AnalysisError,
    variant_key: str,
    variant: UnitMoments | AnalysisError,
    plan: CupedPlan,
    cuped_requested: bool,
    settings: InferenceSettings,
) -> tuple[Comparison, ComparisonEstimates | None]:
    failed = Comparison(
        variant_key,
        baseline_key,
        baseline_mean=baseline.mean if isinstance(baseline, UnitMoments) else None,
        variant_mean=variant.mean if isinstance(variant, UnitMoments) else None,
        cuped=CupedSummary(reason=plan.reason if cuped_requested else None),
    )
    if isinstance(baseline, AnalysisError):
        return replace(failed, error=baseline), None
    if isinstance(variant, AnalysisError):
        return replace(failed, error=variant), None
    absolute, relative, cuped = _estimates(baseline, variant, plan.theta)
    if absolute.standard_error == 0:
        return replace(failed, error=zero_variance_error()), None
    if not cuped.applied:
        cuped = failed.cuped
    n_total = baseline.n + variant.n
    absolute_ci = _interval(absolute, n_total, settings)
    p_value = _p_value(absolute, n_total, settings)
    relative_ci = None if relative is None else _interval(relative, n_total, settings)
    error = (
        None
        if relative is not None
        else AnalysisError(
            ErrorCode.BASELINE_MEAN_ZERO,
            f"the baseline {baseline_key!r} has mean 0, so the relative effect is undefined",
        )
    )
    comparison = replace(
        failed,
        absolute_effect=absolute.effect,
        absolute_ci=absolute_ci,
        relative_effect=None if relative is None else relative.effect,
        relative_ci=relative_ci,
        p_value=p_value,
        significant=p_value < settings.alpha,
        cuped=cuped,
        error=error,
    )
    return comparison, ComparisonEstimates(variant_key, absolute, relative)


def _estimates(
    baseline: UnitMoments, variant: UnitMoments, theta: float | None
) -> tuple[Estimate, Estimate | None, CupedSummary]:
    """Absolute and relative effects, CUPED-adjusted with `theta` when it is not None."""
    if theta is None or baseline.covariate is None or variant.covariate is None:
        return (*_plain_estimates(baseline, variant), CupedSummary())
    b_cov, v_cov = baseline.covariate, variant.covariate
    variance_b = cuped_adjusted_variance(baseline.variance, b_cov.variance, b_cov.covariance, theta)
    variance_v = cuped_adjusted_variance(variant.variance, v_cov.variance, v_cov.covariance, theta)
    difference = cuped_adjusted_difference(baseline.mean, b_cov.mean, variant.mean, v_cov.mean, theta)
    difference_variance = variance_b / baseline.n + variance_v / variant.n
    absolute = _estimate(difference, difference_variance, variance_b, baseline.n, variance_v, variant.n)
    relative = None
    if baseline.mean != 0:
        # Relative effect = adjusted difference / baseline mean; the two share the baseline
        # arm, hence the covariance term (Deng et al. 2018, eq. 3).
        relative_variance = delta_method_ratio_variance(
            difference,
            baseline.mean,
            difference_variance,
            baseline.variance_of_mean,
            cuped_baseline_covariance(baseline.variance, b_cov.covariance, theta, baseline.n),
        )
        relative = Estimate(difference / baseline.mean, math.sqrt(max(relative_variance, 0.0)), absolute.dof)
    unadjusted = baseline.variance_of_mean + variant.variance_of_mean
    reduction = cuped_variance_reduction(difference_variance, unadjusted) if unadjusted else None
    return absolute, relative, CupedSummary(True, theta, reduction)


def _plain_estimates(baseline: UnitMoments, variant: UnitMoments) -> tuple[Estimate, Estimate | None]:
    absolute = _estimate(
        variant.mean - baseline.mean,
        baseline.variance_of_mean + variant.variance_of_mean,
        baseline.variance,
        baseline.n,
        variant.variance,
        variant.n,
    )
    if baseline.mean == 0:
        return absolute, None
    relative_variance = delta_method_relative_variance(
        baseline.mean, baseline.variance_of_mean, variant.mean, variant.variance_of_mean
    )
    relative = Estimate(variant.mean / baseline.mean - 1.0, math.sqrt(relative_variance), absolute.dof)
    return absolute, relative


def _estimate(effect: float, variance: float, variance_b: float, n_b: int, variance_v: float, n_v: int) -> Estimate:
    if variance <= 0:
        return Estimate(effect, 0.0, math.nan)
    return Estimate(effect, math.sqrt(variance), welch_dof(variance_b, n_b, variance_v, n_v))


def _interval(estimate: Estimate, n_total: int, settings: InferenceSettings) -> tuple[float, float]:
    """Fixed-horizon Welch t interval, or the always-valid confidence sequence."""
    if not settings.sequential:
        return t_confidence_interval(estimate.effect, estimate.standard_error, estimate.dof, settings.alpha)
    halfwidth = confidence_sequence_halfwidth(
        estimate.standard_error**2, n_total, settings.alpha, settings.sequential_tuning
    )
    return (estimate.effect - halfwidth, estimate.effect + halfwidth)


def _p_value(estimate: Estimate, n_total: int, settings: InferenceSettings) -> float:
    """Welch two-sided p-value, or the always-valid one; needs a positive standard error."""
    if not settings.sequential:
        return t_two_sided_p_value(estimate.effect / estimate.standard_error, estimate.dof)
    return always_valid_p_value(
        estimate.effect,
        estimate.standard_error**2,
        n_total,
        settings.alpha,
        settings.sequential_tuning,
    )
