"""Assemble the scorecard document from a results document and the experiment's config.

Pure: no I/O. Roles come from the experiment's metric plan; every primary and secondary
comparison forms one multiple-testing family (Holm by default); guardrails are tested
one-sided for harm; the decision summary explains itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.common.registry.models import AnalysisPlan, ExperimentPublic
from services.common.results import DataQuality, ResultsDocument
from services.scorecard.plans import (
    MetricPlan,
    analyze_plan,
    metric_header,
    metric_plan,
    metric_plans,
    variant_mean,
    variant_rows,
)
from services.scorecard.slices import build_slices
from services.scorecard.stats import (
    AnalyzeResult,
    Comparison,
    Correction,
    GuardrailResult,
    MetricOutcome,
    Role,
    SrmResult,
    UnitMoments,
    correct_comparisons,
    decide,
    guardrail_test,
    ratio_metric_moments,
    sample_size_per_variant,
    srm_chi_square,
)
from services.scorecard.stats.sufficient import VariantStats

# MetricPlan, analyze_plan and variant_mean live in plans.py; tests reach them here too.
__all__ = ["MetricPlan", "analyze_plan", "baseline_moments", "build_scorecard", "required_units", "variant_mean"]

# More than this share of units seeing two variants means assignment or logging leaks.
MAX_MULTI_VARIANT_SHARE = 0.01


def srm_for(results: ResultsDocument, experiment: ExperimentPublic) -> SrmResult | None:
    units = {key: variant.units for key, variant in results.variants.items()}
    observed = {v.key: units.get(v.key, 0) for v in experiment.variants}
    weights = {v.key: v.weight for v in experiment.variants if v.weight > 0}
    result = srm_chi_square({k: observed[k] for k in weights}, weights, threshold=experiment.analysis.srm_threshold)
    return result if isinstance(result, SrmResult) else None


def data_quality_failures(quality: DataQuality) -> list[str]:
    units, multi = quality.units, quality.multiple_variant_units
    if units + multi > 0 and multi / (units + multi) > MAX_MULTI_VARIANT_SHARE:
        return [f"{multi} units ({multi / (units + multi):.1%}) were exposed to more than one variant; "
                f"above {MAX_MULTI_VARIANT_SHARE:.0%} the assignment or exposure logging is leaking"]  # fmt: skip
    return []


def baseline_moments(metric_type: str, baseline: VariantStats) -> tuple[float, float | None] | None:
    """The baseline's point estimate and per-unit variance for the power calculation (variance None
    for a proportion: the calculator uses p(1 - p)). A ratio metric gets its ratio and the per-unit
    variance of its linearisation (Deng et al. 2018), as the tests use; not the numerator per unit."""
    sample = baseline.sample
    if metric_type == "quantile":  # no sample-size formula for quantiles here: power is not checked
        return None
    if metric_type == "ratio":
        if baseline.denominator is None:
            return None
        moments = ratio_metric_moments(baseline)
        return (moments.mean, moments.variance) if isinstance(moments, UnitMoments) else None
    mean = sample.sum / sample.n
    return mean, None if metric_type == "proportion" else max(sample.sum_squares / sample.n - mean**2, 0.0)


def required_units(plan: MetricPlan, result: AnalyzeResult, analysis: AnalysisPlan) -> int | None:
    baseline = plan.variants[0] if plan.variants else None
    if baseline is None or baseline.sample.n < 2 or plan.role is not Role.PRIMARY:
        return None
    moments = baseline_moments(plan.metric_type, baseline)
    if moments is None:
        return None
    mean, variance = moments
    reductions = [c.cuped.variance_reduction or 0.0 for c in result.comparisons if c.cuped.applied]
    reduction = min(max(min(reductions, default=0.0), 0.0), 0.99)
    needed = sample_size_per_variant(
        mean, analysis.minimum_detectable_effect, variance=variance, alpha=analysis.alpha,
        power=analysis.power, n_variants=len(plan.variants), variance_reduction=reduction,
    )  # fmt: skip
    return needed if isinstance(needed, int) else None


def _corrected(
    plans: Sequence[MetricPlan], results: list[AnalyzeResult], analysis: AnalysisPlan
) -> list[list[Comparison]]:
    family = [(i, j) for i, p in enumerate(plans) if p.role is not Role.GUARDRAIL
              for j in range(len(results[i].comparisons))]  # fmt: skip
    tested = [results[i].comparisons[j] for i, j in family]
    corrected = correct_comparisons(tested, Correction(analysis.correction), analysis.alpha)
    out = [list(r.comparisons) for r in results]
    for (i, j), comparison in zip(family, corrected, strict=True):
        out[i][j] = comparison
    return out


def _guardrails(plan: MetricPlan, result: AnalyzeResult, analysis: AnalysisPlan) -> list[GuardrailResult]:
    if plan.role is not Role.GUARDRAIL:
        return []
    tests = [guardrail_test(e, higher_is_better=plan.higher_is_better, margin=analysis.guardrail_margin,
                            alpha=analysis.alpha) for e in result.estimates]  # fmt: skip
    return [t for t in tests if isinstance(t, GuardrailResult)]


def planned_analysis(experiment: ExperimentPublic) -> AnalysisPlan:
    """The analysis settings, with the MDE the owner registered in `plan` (frozen at the start) if any."""
    frozen = experiment.frozen_plan
    mde = frozen.minimum_detectable_effect if frozen is not None else experiment.plan.minimum_detectable_effect
    if mde is None or mde == experiment.analysis.minimum_detectable_effect:
        return experiment.analysis
    return experiment.analysis.model_copy(update={"minimum_detectable_effect": mde})


def build_scorecard(
    results: ResultsDocument, experiment: ExperimentPublic, slice_correction: str | None = None
) -> dict[str, Any]:
    """The scorecard document; with slices in the results, `slices` and `slice_checks` too
    (services/scorecard/slices.py). `warnings` holds what the slice checks found."""
    analysis = planned_analysis(experiment)
    plans = metric_plans(results, experiment)
    analyses = [analyze_plan(plan, analysis) for plan in plans]
    comparisons = _corrected(plans, analyses, analysis)
    outcomes, metrics = [], []
    for plan, result, compared in zip(plans, analyses, comparisons, strict=True):
        guardrails = _guardrails(plan, result, analysis)
        rows = variant_rows(plan)
        needed = required_units(plan, result, analysis)
        outcomes.append(MetricOutcome(plan.name, plan.role, compared, plan.higher_is_better, guardrails,
                                      min((r["n"] for r in rows), default=0), needed))  # fmt: skip
        metrics.append({
            **metric_header(plan), "variants": rows,
            "comparisons": [c.to_dict() for c in compared],
            "guardrails": [g.to_dict() for g in guardrails], "required_units_per_variant": needed,
            "timeline": timeline(results, plan, experiment),
        })  # fmt: skip
    srm = srm_for(results, experiment)
    decision = decide(outcomes, srm, data_quality_failures(results.data_quality))
    card = {
        "experiment": experiment.key, "name": experiment.name, "status": experiment.status,
        "computed_at": results.computed_at, "as_of": results.as_of, "catalog_version": results.catalog_version,
        "decision": {"verdict": decision.verdict.value, "reasons": list(decision.reasons)},
        "srm": srm.to_dict() if srm else None, "data_quality": results.data_quality.model_dump(mode="json"),
        "analysis": analysis.model_dump(), "metrics": metrics, "warnings": [],
    }  # fmt: skip
    if results.slices:
        card.update(build_slices(results.slices, experiment, analysis, metrics, slice_correction))
    return card


def timeline(results: ResultsDocument, plan: MetricPlan, experiment: ExperimentPublic) -> list[dict[str, Any]]:
    """Cumulative relative effect per day (from `daily`), for the effect-over-time chart."""
    order = [v.key for v in experiment.variants]
    points = []
    for day in results.daily:
        metric = next((m for m in day.metrics if m.name == plan.name), None)
        if metric is None:
            continue
        day_plan = metric_plan(metric, plan.role, order)
        result = analyze_plan(day_plan, experiment.analysis)
        points.append({"date": day.date.isoformat(), "final": day.final, "comparisons": [
            {"variant": c.variant, "relative_effect": c.to_dict()["relative_effect"],
             "relative_ci": c.to_dict()["relative_ci"]} for c in result.comparisons]})  # fmt: skip
    return points
