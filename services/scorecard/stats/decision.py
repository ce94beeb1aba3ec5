"""The scorecard's decision summary: one verdict with reasons a person can read.

Order of precedence, first match wins:
1. `invalid`      sample ratio mismatch or a failed data-quality check: nothing else is trusted;
2. `dont_ship`    a guardrail harmed beyond its margin, or a primary metric significantly worse;
3. `ship`         a primary metric significantly better (after correction) and no harm;
4. `keep_running` a primary metric cannot be analysed yet, or has fewer units than the power
                  calculation requires for its target MDE;
5. `no_effect`    otherwise: enough units and no primary metric moved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from services.scorecard.stats.guardrails import GuardrailResult
from services.scorecard.stats.results import Comparison
from services.scorecard.stats.srm import SrmResult


class Role(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    GUARDRAIL = "guardrail"


class Verdict(StrEnum):
    INVALID = "invalid"
    DONT_SHIP = "dont_ship"
    SHIP = "ship"
    KEEP_RUNNING = "keep_running"
    NO_EFFECT = "no_effect"


@dataclass(frozen=True)
class MetricOutcome:
    """One metric's analysed comparisons plus what the decision needs to judge them.

    `units_per_variant` is the smallest current n among the compared variants and
    `required_units_per_variant` the power calculator's answer for the metric's target MDE.
    """

    name: str
    role: Role
    comparisons: Sequence[Comparison]
    higher_is_better: bool = True
    guardrails: Sequence[GuardrailResult] = ()
    units_per_variant: int | None = None
    required_units_per_variant: int | None = None


@dataclass(frozen=True)
class DecisionSummary:
    """The scorecard's `decision` block: a verdict and the sentences that justify it (named
    apart from the SDK's `assay.Assignment`, which is a unit's variant)."""

    verdict: Verdict
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"verdict": self.verdict.value, "reasons": list(self.reasons)}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.2f}%"


def describe_effect(comparison: Comparison) -> str:
    """'+3.10% relative (CI +1.00% to +5.20%), p = 0.0040' or the absolute equivalent."""
    p_value = "n/a" if comparison.p_value is None else f"{comparison.p_value:.4f}"
    if comparison.relative_effect is not None and comparison.relative_ci is not None:
        low, high = comparison.relative_ci
        return (
            f"{_percent(comparison.relative_effect)} relative (CI {_percent(low)} to {_percent(high)}), p = {p_value}"
        )
    low, high = comparison.absolute_ci or (float("nan"), float("nan"))
    return f"{comparison.absolute_effect:+.4g} absolute (CI {low:+.4g} to {high:+.4g}), p = {p_value}"


def _is_good(comparison: Comparison, higher_is_better: bool) -> bool:
    effect = comparison.absolute_effect or 0.0
    return effect > 0 if higher_is_better else effect < 0


def _listed(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value:,}" for key, value in counts.items())


def _invalid_reasons(srm: SrmResult | None, data_quality_failures: Sequence[str]) -> list[str]:
    reasons: list[str] = []
    if srm is not None and srm.mismatch:
        reasons.append(
            f"sample ratio mismatch: p = {srm.p_value:.2g} is below {srm.threshold:g}; observed "
            f"{_listed(srm.observed)} against expected {_listed(_rounded(srm.expected))}, so "
            "assignment or logging is broken and no effect can be trusted"
        )
    reasons += [f"data quality check failed: {failure}" for failure in data_quality_failures]
    return reasons


def _rounded(expected: dict[str, float]) -> dict[str, int]:
    return {key: round(value) for key, value in expected.items()}


def _harm_reasons(metrics: Sequence[MetricOutcome]) -> list[str]:
    reasons: list[str] = []
    for metric in metrics:
        if metric.role is Role.GUARDRAIL:
            reasons += [
                f"guardrail {metric.name} harmed in {result.variant} beyond the "
                f"{result.margin:g}{' relative' if result.relative else ''} margin "
                f"(one-sided p = {result.p_value_harm:.4f})"
                for result in metric.guardrails
                if result.harmed
            ]
        if metric.role is Role.PRIMARY:
            reasons += [
                f"primary metric {metric.name} significantly worse in {item.variant}: {describe_effect(item)}"
                for item in metric.comparisons
                if item.significant and not _is_good(item, metric.higher_is_better)
            ]
    return reasons


def _win_reasons(primaries: Sequence[MetricOutcome]) -> list[str]:
    return [
        f"primary metric {metric.name} improved in {item.variant}: {describe_effect(item)}"
        for metric in primaries
        for item in metric.comparisons
        if item.significant and _is_good(item, metric.higher_is_better)
    ]


def _pending_reasons(primaries: Sequence[MetricOutcome]) -> list[str]:
    reasons: list[str] = []
    for metric in primaries:
        reasons += [
            f"primary metric {metric.name} cannot be analysed for {item.variant} yet: {item.error.message}"
            for item in metric.comparisons
            if item.error is not None and item.p_value is None
        ]
        current, required = metric.units_per_variant, metric.required_units_per_variant
        if current is not None and required is not None and current < required:
            reasons.append(
                f"primary metric {metric.name} underpowered: {current:,} of the {required:,} "
                "units per variant needed to detect the target effect"
            )
    return reasons


def _guardrail_caveats(metrics: Sequence[MetricOutcome]) -> list[str]:
    return [
        f"note: guardrail {metric.name} shows no harm in {result.variant}, but staying within "
        f"the {result.margin:g} margin is not yet established"
        for metric in metrics
        if metric.role is Role.GUARDRAIL
        for result in metric.guardrails
        if result.margin > 0 and not result.harmed and not result.non_inferior
    ]


def decide(
    metrics: Sequence[MetricOutcome],
    srm: SrmResult | None,
    data_quality_failures: Sequence[str] = (),
) -> DecisionSummary:
    """The experiment-level verdict with its reasons (see the module docstring)."""
    invalid = _invalid_reasons(srm, data_quality_failures)
    if invalid:
        return DecisionSummary(Verdict.INVALID, invalid)
    harm = _harm_reasons(metrics)
    if harm:
        return DecisionSummary(Verdict.DONT_SHIP, harm)
    primaries = [metric for metric in metrics if metric.role is Role.PRIMARY]
    wins = _win_reasons(primaries)
    if wins:
        return DecisionSummary(Verdict.SHIP, wins + _guardrail_caveats(metrics))
    pending = _pending_reasons(primaries)
    if pending:
        return DecisionSummary(Verdict.KEEP_RUNNING, pending)
    if not primaries:
        return DecisionSummary(Verdict.NO_EFFECT, ["no primary metric is configured, so nothing to ship"])
    if all(metric.required_units_per_variant is not None for metric in primaries):
        detail = "every primary metric had the units needed to detect its target effect"
    else:
        detail = "no target effect was given for some primary metric, so power was not checked"
    return DecisionSummary(Verdict.NO_EFFECT, [f"no primary metric changed significantly; {detail}"])
