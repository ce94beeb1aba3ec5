"""Guardrail harm tests and the experiment-level decision summary."""

from __future__ import annotations

import pytest
from scipy import stats as scipy_stats

from services.scorecard.stats import (
    AnalysisError,
    Comparison,
    ComparisonEstimates,
    ErrorCode,
    Estimate,
    GuardrailResult,
    MetricOutcome,
    Role,
    SrmResult,
    Verdict,
    decide,
    guardrail_test,
)

BALANCED = SrmResult(0.2, 0.65, False, 0.001, True, {"a": 5010, "b": 4990}, {"a": 5000.0, "b": 5000.0})


def _estimates(relative: float, se: float, dof: float = 1e6) -> ComparisonEstimates:
    return ComparisonEstimates("b", Estimate(relative * 10, se * 10, dof), Estimate(relative, se, dof))


def _guardrail(relative, se, **kwargs) -> GuardrailResult:
    result = guardrail_test(_estimates(relative, se), **kwargs)
    assert isinstance(result, GuardrailResult)
    return result


def test_harm_beyond_margin_is_detected_one_sided():
    result = _guardrail(-0.05, 0.01, higher_is_better=True, margin=0.02)
    assert result.harmed is True
    assert result.non_inferior is False
    assert result.p_value_harm == pytest.approx(scipy_stats.t.cdf(-3.0, 1e6), rel=1e-6)


def test_small_harm_within_margin_is_non_inferior():
    result = _guardrail(-0.005, 0.005, higher_is_better=True, margin=0.02)
    assert (result.harmed, result.non_inferior) == (False, True)


def test_lower_is_better_flips_the_direction():
    latency_up = _guardrail(0.05, 0.01, higher_is_better=False, margin=0.0)
    latency_down = _guardrail(-0.05, 0.01, higher_is_better=False, margin=0.0)
    assert latency_up.harmed is True
    assert latency_down.harmed is False


def test_harm_and_non_inferiority_p_values_are_complementary():
    result = _guardrail(-0.01, 0.01, higher_is_better=True, margin=0.005)
    assert result.p_value_harm + result.p_value_non_inferiority == pytest.approx(1.0)


def test_guardrail_errors_are_typed():
    no_relative = ComparisonEstimates("b", Estimate(1.0, 0.5, 10), None)
    result = guardrail_test(no_relative, higher_is_better=True)
    assert isinstance(result, AnalysisError)
    absolute = guardrail_test(no_relative, higher_is_better=True, relative=False)
    assert isinstance(absolute, GuardrailResult)
    with pytest.raises(ValueError):
        guardrail_test(no_relative, higher_is_better=True, margin=-0.1, relative=False)


def _comparison(relative: float, significant: bool, p_value: float = 0.01) -> Comparison:
    return Comparison(
        "b",
        "a",
        baseline_mean=0.1,
        variant_mean=0.1 * (1 + relative),
        absolute_effect=0.1 * relative,
        absolute_ci=(0.0, 0.0),
        relative_effect=relative,
        relative_ci=(relative - 0.01, relative + 0.01),
        p_value=p_value,
        significant=significant,
    )


def _primary(relative=0.03, significant=True, current=None, required=None, higher=True):
    return MetricOutcome(
        "conversion",
        Role.PRIMARY,
        [_comparison(relative, significant)],
        higher_is_better=higher,
        units_per_variant=current,
        required_units_per_variant=required,
    )


def _guard(harmed: bool, non_inferior: bool = False, margin: float = 0.02) -> MetricOutcome:
    result = GuardrailResult("b", harmed, non_inferior, 0.001 if harmed else 0.4, 0.5, margin, True)
    return MetricOutcome("latency_ms", Role.GUARDRAIL, [], higher_is_better=False, guardrails=[result])


def test_ship_when_primary_wins_without_harm():
    decision = decide([_primary(), _guard(harmed=False, non_inferior=True)], BALANCED)
    assert decision.verdict is Verdict.SHIP
    assert decision.reasons[0].startswith("primary metric conversion improved in b: +3.00%")


def test_ship_notes_guardrails_not_yet_shown_non_inferior():
    decision = decide([_primary(), _guard(harmed=False, non_inferior=False)], BALANCED)
    assert decision.verdict is Verdict.SHIP
    assert any("not yet established" in reason for reason in decision.reasons)


def test_srm_makes_the_experiment_invalid_whatever_the_metrics_say():
    srm = SrmResult(30.0, 1e-8, True, 0.001, True, {"a": 5000, "b": 5400}, {"a": 5200.0, "b": 5200.0})
    decision = decide([_primary()], srm)
    assert decision.verdict is Verdict.INVALID
    assert "sample ratio mismatch" in decision.reasons[0]


def test_data_quality_failure_is_invalid():
    decision = decide([_primary()], BALANCED, ["12% of units saw more than one variant"])
    assert decision.to_dict() == {
        "verdict": "invalid",
        "reasons": ["data quality check failed: 12% of units saw more than one variant"],
    }


def test_harmed_guardrail_blocks_shipping():
    decision = decide([_primary(), _guard(harmed=True)], BALANCED)
    assert decision.verdict is Verdict.DONT_SHIP
    assert "guardrail latency_ms harmed in b" in decision.reasons[0]


def test_primary_significantly_worse_is_dont_ship():
    decision = decide([_primary(relative=-0.03)], BALANCED)
    assert decision.verdict is Verdict.DONT_SHIP
    lower_is_better = decide([_primary(relative=-0.03, higher=False)], BALANCED)
    assert lower_is_better.verdict is Verdict.SHIP


def test_keep_running_when_underpowered():
    decision = decide([_primary(significant=False, current=1200, required=5000)], BALANCED)
    assert decision.verdict is Verdict.KEEP_RUNNING
    assert decision.reasons == [
        "primary metric conversion underpowered: 1,200 of the 5,000 units per variant needed "
        "to detect the target effect"
    ]


def test_keep_running_when_a_primary_cannot_be_analysed():
    errored = Comparison("b", "a", error=AnalysisError(ErrorCode.TOO_FEW_UNITS, "variant 'b' has 1 unit"))
    metric = MetricOutcome("conversion", Role.PRIMARY, [errored])
    assert decide([metric], BALANCED).verdict is Verdict.KEEP_RUNNING


def test_no_effect_when_powered_and_flat():
    decision = decide([_primary(significant=False, current=6000, required=5000), _guard(harmed=False)], BALANCED)
    assert decision.verdict is Verdict.NO_EFFECT
    assert "had the units needed" in decision.reasons[0]


def test_secondary_metrics_do_not_decide():
    secondary = MetricOutcome("revenue", Role.SECONDARY, [_comparison(0.5, True)])
    decision = decide([_primary(significant=False, current=10, required=5), secondary], None)
    assert decision.verdict is Verdict.NO_EFFECT
    assert decide([], None).verdict is Verdict.NO_EFFECT


def test_reasons_are_finite_text():
    decision = decide([_primary()], BALANCED)
    assert all(isinstance(r, str) and "nan" not in r for r in decision.reasons)
