"""Result types of `analyze`: plain dataclasses with a JSON-safe `to_dict()`."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.scorecard.stats.errors import AnalysisError, InputError, finite_or_none


def _interval(interval: tuple[float, float] | None) -> list[float | None] | None:
    if interval is None:
        return None
    return [finite_or_none(interval[0]), finite_or_none(interval[1])]


@dataclass(frozen=True)
class CupedSummary:
    """Whether CUPED was applied, the pooled theta and the achieved variance reduction.

    `reason` says why CUPED was requested but not applied (null otherwise).
    """

    applied: bool = False
    theta: float | None = None
    variance_reduction: float | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "applied": self.applied,
            "theta": finite_or_none(self.theta),
            "variance_reduction": finite_or_none(self.variance_reduction),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Comparison:
    """One treatment variant against the baseline, as returned by POST /v1/analyze."""

    variant: str
    baseline: str
    baseline_mean: float | None = None
    variant_mean: float | None = None
    absolute_effect: float | None = None
    absolute_ci: tuple[float, float] | None = None
    relative_effect: float | None = None
    relative_ci: tuple[float, float] | None = None
    p_value: float | None = None
    significant: bool = False
    cuped: CupedSummary = field(default_factory=CupedSummary)
    error: AnalysisError | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "variant": self.variant,
            "baseline": self.baseline,
            "baseline_mean": finite_or_none(self.baseline_mean),
            "variant_mean": finite_or_none(self.variant_mean),
            "absolute_effect": finite_or_none(self.absolute_effect),
            "absolute_ci": _interval(self.absolute_ci),
            "relative_effect": finite_or_none(self.relative_effect),
            "relative_ci": _interval(self.relative_ci),
            "p_value": finite_or_none(self.p_value),
            "significant": self.significant,
            "cuped": self.cuped.to_dict(),
            "error": None if self.error is None else self.error.to_dict(),
        }


@dataclass(frozen=True)
class Estimate:
    """An effect with its standard error and Welch-Satterthwaite degrees of freedom."""

    effect: float
    standard_error: float
    dof: float


@dataclass(frozen=True)
class ComparisonEstimates:
    """The standard errors behind one Comparison, for guardrail tests; not sent over HTTP."""

    variant: str
    absolute: Estimate
    relative: Estimate | None


@dataclass(frozen=True)
class AnalyzeResult:
    """`errors` non-empty means the request itself was invalid (a 4xx for the API layer)."""

    comparisons: list[Comparison] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    estimates: list[ComparisonEstimates] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, object]:
        return {
            "comparisons": [comparison.to_dict() for comparison in self.comparisons],
            "errors": [error.to_dict() for error in self.errors],
        }
