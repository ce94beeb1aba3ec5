"""Guardrail metrics: one-sided tests for harm against a tolerated (non-inferiority) margin.

The effect is first oriented so that positive is good (`higher_is_better`). With margin
m >= 0 (a relative change by default, e.g. 0.02 tolerates 2% harm):
- harm test        H0: effect >= -m  vs  H1: effect < -m   -> `harmed` when rejected;
- non-inferiority  H0: effect <= -m  vs  H1: effect > -m   -> `non_inferior` when rejected
(Schuirmann 1987; Spotify's "Risk-aware product decisions in A/B tests with multiple
metrics", Schultzberg et al. 2024). Guardrails are not part of the primary/secondary
correction family. They use the fixed-horizon Welch test even in sequential mode, which only
makes `harmed` easier to trigger, i.e. errs towards not shipping.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.scorecard.stats.errors import AnalysisError, ErrorCode, finite_or_none
from services.scorecard.stats.formulas import t_one_sided_upper_p_value
from services.scorecard.stats.results import ComparisonEstimates


@dataclass(frozen=True)
class GuardrailResult:
    variant: str
    harmed: bool
    non_inferior: bool
    p_value_harm: float
    p_value_non_inferiority: float
    margin: float
    relative: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "variant": self.variant,
            "harmed": self.harmed,
            "non_inferior": self.non_inferior,
            "p_value_harm": finite_or_none(self.p_value_harm),
            "p_value_non_inferiority": finite_or_none(self.p_value_non_inferiority),
            "margin": self.margin,
            "relative": self.relative,
        }


def guardrail_test(
    estimates: ComparisonEstimates,
    *,
    higher_is_better: bool,
    margin: float = 0.0,
    alpha: float = 0.05,
    relative: bool = True,
) -> GuardrailResult | AnalysisError:
    """One-sided harm and non-inferiority tests of one variant-vs-baseline comparison."""
    if margin < 0:
        raise ValueError("the non-inferiority margin is a tolerated harm and must be >= 0")
    estimate = estimates.relative if relative else estimates.absolute
    if estimate is None:
        return AnalysisError(
            ErrorCode.BASELINE_MEAN_ZERO,
            "the baseline mean is 0, so a relative guardrail margin cannot be tested",
        )
    if estimate.standard_error <= 0:
        return AnalysisError(ErrorCode.ZERO_VARIANCE, "the effect has no variance to test")
    oriented = estimate.effect if higher_is_better else -estimate.effect
    t_statistic = (oriented + margin) / estimate.standard_error
    p_non_inferiority = t_one_sided_upper_p_value(t_statistic, estimate.dof)
    p_harm = t_one_sided_upper_p_value(-t_statistic, estimate.dof)
    return GuardrailResult(
        variant=estimates.variant,
        harmed=p_harm < alpha,
        non_inferior=p_non_inferiority < alpha,
        p_value_harm=p_harm,
        p_value_non_inferiority=p_non_inferiority,
        margin=margin,
        relative=relative,
    )
