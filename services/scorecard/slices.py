"""The scorecard's slices: every planned metric within each value of each dimension, the checks
that say whether the overall result can be read as it stands, and the warnings that follow.

- Per slice: units per variant, an SRM check against the experiment's configured weights (same
  threshold as the overall check), and every planned metric's comparisons.
- One multiple-testing family: every slice x metric x treatment-variant comparison of the
  primary and secondary metrics, Holm by default, Benjamini-Hochberg when the experiment's
  `analysis.correction` is "bh" or the reader asks (`?slice_correction=bh`). Slices are
  corrected even when the experiment's own correction is "none": they are where chance findings
  hide. Guardrail slices are shown with their uncorrected p-values and are outside the family,
  as are the overall results. Each comparison keeps `raw_p_value`; `p_value` and `significant`
  are the corrected ones.
- Simpson's paradox: an overall effect that is significant while the slices holding most (more
  than half) of a dimension's units point the other way (`stats/slices.py`).
- Slice mix: the variant x slice-value table of units fails the chi-square test of
  independence at the SRM threshold.
Pure: built from the results document, the experiment and the overall metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.common.registry.models import AnalysisPlan, ExperimentPublic
from services.common.results import SliceResult
from services.scorecard.plans import MetricPlan, analyze_plan, metric_header, planned_metrics, variant_rows
from services.scorecard.slice_words import mix_warning, simpson_warning, slice_srm_warning
from services.scorecard.stats import (
    AnalyzeResult,
    Comparison,
    Correction,
    Role,
    SrmResult,
    correct_comparisons,
    srm_chi_square,
)
from services.scorecard.stats.errors import finite_or_none
from services.scorecard.stats.slices import SliceEffect, SliceMixResult, opposite_sign_share, slice_mix_test

# Slices holding more than this share of a dimension's units, pointing against a significant
# overall effect, make the overall number a Simpson's paradox.
SIMPSON_SHARE = 0.5


def slice_correction(analysis: AnalysisPlan, requested: str | None = None) -> Correction:
    """The slice family's correction: the reader's `holm` or `bh`, else BH when the experiment
    asks for BH, else Holm (never none)."""
    if requested is not None:
        return Correction(requested)
    return Correction.BH if analysis.correction == "bh" else Correction.HOLM


@dataclass(frozen=True)
class SliceAnalysis:
    dimension: str
    value: str
    units: dict[str, int]
    srm: SrmResult | None
    plans: list[MetricPlan]
    results: list[AnalyzeResult]


def analyze_slice(item: SliceResult, experiment: ExperimentPublic, analysis: AnalysisPlan) -> SliceAnalysis:
    units = {v.key: item.variants[v.key].units if v.key in item.variants else 0 for v in experiment.variants}
    weights = {v.key: v.weight for v in experiment.variants if v.weight > 0}
    srm = srm_chi_square({k: units[k] for k in weights}, weights, threshold=analysis.srm_threshold)
    plans = planned_metrics(item.metrics, experiment)
    results = [analyze_plan(plan, analysis) for plan in plans]
    return SliceAnalysis(item.dimension, item.value, units, srm if isinstance(srm, SrmResult) else None, plans,
                         results)  # fmt: skip


def slice_family(slices: Sequence[SliceAnalysis]) -> list[tuple[int, int, int]]:
    """(slice, metric, comparison) indices of the family: primary and secondary metrics' comparisons
    that have a p-value (an error without one is not a test)."""
    return [(s, m, c) for s, item in enumerate(slices)
            for m, (plan, result) in enumerate(zip(item.plans, item.results, strict=True))
            if plan.role is not Role.GUARDRAIL
            for c, comparison in enumerate(result.comparisons) if comparison.p_value is not None]  # fmt: skip


def corrected_comparisons(
    slices: Sequence[SliceAnalysis], correction: Correction, alpha: float
) -> list[list[list[Comparison]]]:
    """Per slice, per metric, the comparisons with p-values corrected over the whole slice family;
    the rest (guardrails, errors) pass unchanged."""
    family = slice_family(slices)
    tested = [slices[s].results[m].comparisons[c] for s, m, c in family]
    out = [[list(result.comparisons) for result in item.results] for item in slices]
    for (s, m, c), comparison in zip(family, correct_comparisons(tested, correction, alpha), strict=True):
        out[s][m][c] = comparison
    return out


def _comparison(raw: Comparison, corrected: Comparison) -> dict[str, Any]:
    return {**corrected.to_dict(), "raw_p_value": finite_or_none(raw.p_value)}


def slice_entry(item: SliceAnalysis, corrected: Sequence[Sequence[Comparison]]) -> dict[str, Any]:
    metrics = []
    for plan, result, compared in zip(item.plans, item.results, corrected, strict=True):
        comparisons = [_comparison(raw, c) for raw, c in zip(result.comparisons, compared, strict=True)]
        metrics.append({**metric_header(plan), "corrected": plan.role is not Role.GUARDRAIL,
                        "variants": variant_rows(plan), "comparisons": comparisons})  # fmt: skip
    return {"dimension": item.dimension, "value": item.value, "units": dict(item.units),
            "srm": item.srm.to_dict() if item.srm else None, "metrics": metrics}  # fmt: skip


def mix_checks(slices: Sequence[SliceAnalysis], experiment: ExperimentPublic) -> dict[str, SliceMixResult]:
    """The slice-mix test of each dimension over the variants with a weight."""
    weighted = [v.key for v in experiment.variants if v.weight > 0]
    out = {}
    for dimension in dict.fromkeys(item.dimension for item in slices):
        counts = {key: {item.value: item.units[key] for item in slices if item.dimension == dimension}
                  for key in weighted}  # fmt: skip
        result = slice_mix_test(counts, experiment.analysis.srm_threshold)
        if result is not None:
            out[dimension] = result
    return out


def simpson_findings(slices: Sequence[SliceAnalysis], metrics: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Significant overall effects that the slices holding most of some dimension's units contradict."""
    findings = []
    for metric in metrics:
        for overall in metric["comparisons"]:
            if not overall["significant"] or overall["absolute_effect"] is None:
                continue
            for dimension in dict.fromkeys(item.dimension for item in slices):
                effects = [_slice_effect(item, metric["name"], overall["variant"])
                           for item in slices if item.dimension == dimension]  # fmt: skip
                found = opposite_sign_share(overall["absolute_effect"], effects)
                if found is not None and found.share > SIMPSON_SHARE:
                    findings.append({"metric": metric["name"], "variant": overall["variant"],
                                     "baseline": overall["baseline"], "dimension": dimension,
                                     "overall_sign": found.overall_sign, "share": found.share,
                                     "values": list(found.values)})  # fmt: skip
    return findings


def _slice_effect(item: SliceAnalysis, metric: str, variant: str) -> SliceEffect:
    """The slice's effect, None when it could not be computed or the slice's own traffic split is
    broken (its effect means nothing then); its units count either way."""
    units = sum(item.units.values())
    if item.srm is not None and item.srm.mismatch:
        return SliceEffect(item.value, None, units)
    for plan, result in zip(item.plans, item.results, strict=True):
        if plan.name != metric:
            continue
        comparison = next((c for c in result.comparisons if c.variant == variant), None)
        if comparison is not None and comparison.p_value is not None:
            return SliceEffect(item.value, comparison.absolute_effect, units)
    return SliceEffect(item.value, None, units)


def build_slices(
    slices: Sequence[SliceResult], experiment: ExperimentPublic, analysis: AnalysisPlan,
    metrics: Sequence[dict[str, Any]], requested_correction: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """`slices`, `slice_checks` and the `warnings` they raise, for the scorecard document."""
    analysed = [analyze_slice(item, experiment, analysis) for item in slices]
    correction = slice_correction(analysis, requested_correction)
    corrected = corrected_comparisons(analysed, correction, analysis.alpha)
    mixes = mix_checks(analysed, experiment)
    simpson = simpson_findings(analysed, metrics)
    mismatched = [item for item in analysed if item.srm is not None and item.srm.mismatch]
    warnings = [simpson_warning(finding, len(experiment.variants)) for finding in simpson]
    warnings += [mix_warning(dimension, result) for dimension, result in mixes.items() if result.mismatch]
    warnings += [slice_srm_warning(item.dimension, item.value, item.srm) for item in mismatched if item.srm]
    checks = {
        "correction": correction.value,
        "family_size": len(slice_family(analysed)),
        "srm_mismatches": [{"dimension": item.dimension, "value": item.value} for item in mismatched],
        "mix": [{"dimension": dimension, **result.to_dict()} for dimension, result in mixes.items()],
        "simpson": simpson,
    }  # fmt: skip
    entries = [slice_entry(item, compared) for item, compared in zip(analysed, corrected, strict=True)]
    return {"slices": entries, "slice_checks": checks, "warnings": warnings}
