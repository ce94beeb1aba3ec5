"""Welch's unequal-variance t-test on sufficient statistics."""

from __future__ import annotations

from dataclasses import dataclass

from services.scorecard.stats.errors import AnalysisError, ErrorCode
from services.scorecard.stats.formulas import (
    sample_mean,
    sample_variance,
    standard_error,
    t_quantile,
    t_two_sided_p_value,
    welch_dof,
)
from services.scorecard.stats.sufficient import SampleStats


@dataclass(frozen=True)
class TTestResult:
    effect: float
    standard_error: float
    dof: float
    t_statistic: float
    p_value: float
    ci: tuple[float, float]


def t_confidence_interval(estimate: float, standard_error: float, dof: float, alpha: float) -> tuple[float, float]:
    """Two-sided (1 - alpha) interval estimate +- t_{1-alpha/2, dof} * se."""
    halfwidth = t_quantile(1.0 - alpha / 2.0, dof) * standard_error
    return (estimate - halfwidth, estimate + halfwidth)


def t_test_from_estimate(effect: float, standard_error: float, dof: float, alpha: float) -> TTestResult:
    """Two-sided test of effect = 0 given its standard error and degrees of freedom."""
    t_statistic = effect / standard_error
    return TTestResult(
        effect=effect,
        standard_error=standard_error,
        dof=dof,
        t_statistic=t_statistic,
        p_value=t_two_sided_p_value(t_statistic, dof),
        ci=t_confidence_interval(effect, standard_error, dof, alpha),
    )


def sample_size_error(key: str, n: int) -> AnalysisError | None:
    """The typed failure for a variant too small to have a sample variance, if any."""
    if n == 0:
        return AnalysisError(ErrorCode.EMPTY_VARIANT, f"variant {key!r} has no units yet")
    if n < 2:
        return AnalysisError(
            ErrorCode.TOO_FEW_UNITS,
            f"variant {key!r} has {n} unit; at least 2 are needed to estimate a variance",
        )
    return None


def zero_variance_error() -> AnalysisError:
    return AnalysisError(
        ErrorCode.ZERO_VARIANCE,
        "every unit has the same value in both variants, so the difference has no variance",
    )


def welch_t_test(baseline: SampleStats, variant: SampleStats, alpha: float = 0.05) -> TTestResult | AnalysisError:
    """Welch's t-test of mean(variant) - mean(baseline) (Welch 1947).

    Agrees with scipy.stats.ttest_ind_from_stats(..., equal_var=False).
    """
    for key, stats in (("baseline", baseline), ("variant", variant)):
        error = sample_size_error(key, stats.n)
        if error is not None:
            return error
    variance_b = sample_variance(baseline.n, baseline.sum, baseline.sum_squares)
    variance_v = sample_variance(variant.n, variant.sum, variant.sum_squares)
    if variance_b == 0 and variance_v == 0:
        return zero_variance_error()
    effect = sample_mean(variant.n, variant.sum) - sample_mean(baseline.n, baseline.sum)
    se = standard_error(variance_b / baseline.n, variance_v / variant.n)
    dof = welch_dof(variance_b, baseline.n, variance_v, variant.n)
    return t_test_from_estimate(effect, se, dof, alpha)
