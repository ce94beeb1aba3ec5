"""Planned metrics as the engine sees them: each metric of the experiment's plan (primary,
secondary, guardrails) with its role and per-variant statistics read from a results-document
block (overall, per day or per slice), analysed with the experiment's settings, and the
per-variant rows the scorecard shows. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from services.common.registry.models import AnalysisPlan, ExperimentPublic
from services.common.results import MetricResult, ResultsDocument, VariantStatistics
from services.scorecard.stats import AnalyzeResult, Role, analyze
from services.scorecard.stats.quantile import QuantileStats, analyze_quantiles
from services.scorecard.stats.sufficient import CovariateStats, DenominatorStats, SampleStats, VariantStats


@dataclass(frozen=True)
class MetricPlan:
    name: str
    role: Role
    metric_type: str
    higher_is_better: bool
    variants: list[VariantStats]
    # Quantile metrics: p, and each variant's quantile statistics (None while it has no events).
    quantile: float | None = None
    quantiles: tuple[QuantileStats | None, ...] = field(default=())


def metric_roles(experiment: ExperimentPublic) -> dict[str, Role]:
    roles: dict[str, Role] = {}
    for role, names in ((Role.GUARDRAIL, experiment.metrics.guardrails),
                        (Role.SECONDARY, experiment.metrics.secondary),
                        (Role.PRIMARY, experiment.metrics.primary)):  # fmt: skip
        roles.update(dict.fromkeys(names, role))
    return roles


def variant_stats(block: VariantStatistics) -> VariantStats:
    """A results-document variant block as the engine's sufficient statistics."""
    covariate = denominator = None
    if block.covariate is not None:
        cov = block.covariate
        covariate = CovariateStats(cov.sum, cov.sum_squares, cov.sum_products, cov.denominator_products)
    if block.denominator is not None:
        den = block.denominator
        denominator = DenominatorStats(den.sum, den.sum_squares, den.sum_products)
    sample = SampleStats(block.n, block.sum, block.sum_squares)
    return VariantStats(block.key, sample, covariate, denominator)


def quantile_stats(block: VariantStatistics) -> QuantileStats | None:
    """A results-document quantile block as the engine's statistics; None without events (the
    block's order statistics are null then) or without a block at all."""
    q = block.quantile
    if q is None or None in (q.value, q.lower_probability, q.upper_probability, q.lower_value, q.upper_value):
        return None
    assert q.value is not None and q.lower_probability is not None and q.upper_probability is not None
    assert q.lower_value is not None and q.upper_value is not None
    return QuantileStats(q.probability, block.n, q.n_events, q.value, q.lower_probability, q.upper_probability,
                         q.lower_value, q.upper_value, q.events_below, q.events_below_squares, q.events_squares,
                         q.events_products)  # fmt: skip


def _blocks(metric: MetricResult, order: Sequence[str]) -> list[VariantStatistics]:
    """In the experiment's variant order; a variant without units in the document has zeros."""
    by_key = {v.key: v for v in metric.variants}
    return [by_key.get(key) or VariantStatistics(key=key, n=0, sum=0.0, sum_squares=0.0) for key in order]


def metric_plan(metric: MetricResult, role: Role, order: Sequence[str]) -> MetricPlan:
    blocks = _blocks(metric, order)
    plan = MetricPlan(metric.name, role, metric.type, metric.higher_is_better, [variant_stats(b) for b in blocks])
    if metric.type != "quantile":
        return plan
    probability = next((block.quantile.probability for block in metric.variants if block.quantile), None)
    return replace(plan, quantile=probability, quantiles=tuple(quantile_stats(block) for block in blocks))


def planned_metrics(metrics: Sequence[MetricResult], experiment: ExperimentPublic) -> list[MetricPlan]:
    """Metrics in the plan's order (primary, secondary, guardrails); others are left out."""
    roles = metric_roles(experiment)
    order = [v.key for v in experiment.variants]
    by_name = {metric.name: metric for metric in metrics}
    names = [*experiment.metrics.primary, *experiment.metrics.secondary, *experiment.metrics.guardrails]
    return [metric_plan(by_name[name], roles[name], order) for name in dict.fromkeys(names) if name in by_name]


def metric_plans(results: ResultsDocument, experiment: ExperimentPublic) -> list[MetricPlan]:
    return planned_metrics(results.metrics, experiment)


def analyze_plan(plan: MetricPlan, analysis: AnalysisPlan) -> AnalyzeResult:
    if plan.metric_type == "quantile":
        keyed = [(variant.key, stats) for variant, stats in zip(plan.variants, plan.quantiles, strict=True)]
        return analyze_quantiles(keyed, alpha=analysis.alpha)
    return analyze(
        plan.metric_type, plan.variants, alpha=analysis.alpha, cuped=analysis.cuped,
        sequential=analysis.sequential, sequential_tuning=analysis.sequential_tuning,
    )  # fmt: skip


def variant_mean(metric_type: str, variant: VariantStats, quantile: QuantileStats | None = None) -> float | None:
    """The variant's point estimate: per unit for mean and proportion metrics; for a ratio metric the
    ratio itself, sum of numerators / sum of denominators (not numerator per unit); for a quantile
    metric the p-quantile of the variant's event values. None when undefined."""
    if metric_type == "quantile":
        return quantile.value if quantile is not None else None
    if metric_type == "ratio":
        denominator = variant.denominator
        return variant.sample.sum / denominator.sum if denominator is not None and denominator.sum else None
    return variant.sample.sum / variant.sample.n if variant.sample.n else None


def variant_rows(plan: MetricPlan) -> list[dict[str, Any]]:
    quantiles = plan.quantiles or (None,) * len(plan.variants)
    return [{"key": v.key, "n": v.sample.n, "mean": variant_mean(plan.metric_type, v, q)}
            for v, q in zip(plan.variants, quantiles, strict=True)]  # fmt: skip


def metric_header(plan: MetricPlan) -> dict[str, Any]:
    """What names a metric in the scorecard; a quantile metric adds its probability (`quantile`)."""
    header: dict[str, Any] = {"name": plan.name, "role": plan.role.value, "type": plan.metric_type,
                              "higher_is_better": plan.higher_is_better}  # fmt: skip
    if plan.metric_type == "quantile":
        header["quantile"] = plan.quantile
    return header
