"""Quantile metrics on the scorecard: comparisons are the engine's `compare_quantiles`, a variant's
`mean` is its quantile, a quantile guardrail where lower is better is judged for harm, failures
are data, and the page shows 'p90 (quantile)' values in the metric's format."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from services.common.registry.models import ExperimentPublic
from services.common.results import ResultsDocument
from services.scorecard.pages.render import environment, metric_groups
from services.scorecard.scorecard import build_scorecard
from services.scorecard.stats.quantile import QuantileStats, compare_quantiles
from tests.integration.scorecard.documents import simulated_results
from tests.unit.scorecard.test_stats_quantile import quantile_stats_from_events

P90 = 0.9


def page_loads(rng: np.random.Generator, n_units: int, slowdown: float) -> tuple[np.ndarray, np.ndarray]:
    """Page loads in ms, several per unit, correlated within a unit; `slowdown` multiplies them."""
    counts = rng.poisson(3.0, size=n_units)
    units = np.repeat(np.arange(n_units), counts)
    unit_effect = rng.normal(0.0, 0.4, size=n_units)
    values = np.exp(math.log(800.0) + unit_effect[units] + rng.normal(0.0, 0.5, size=units.size)) * slowdown
    return values, units


def quantile_variant(key: str, stats: QuantileStats, values: np.ndarray, units: np.ndarray) -> dict[str, Any]:
    per_unit = np.bincount(units, weights=values, minlength=stats.n_units)
    block = {"probability": stats.probability, "n_events": stats.n_events, "value": stats.value,
             "lower_probability": stats.lower_probability, "upper_probability": stats.upper_probability,
             "lower_value": stats.lower_value, "upper_value": stats.upper_value,
             **{name: int(getattr(stats, name)) for name in ("events_below", "events_below_squares",
                                                             "events_squares", "events_products")}}  # fmt: skip
    return {"key": key, "n": stats.n_units, "sum": float(per_unit.sum()),
            "sum_squares": float(per_unit @ per_unit), "quantile": block}  # fmt: skip


def document_with_p90(
    slowdown: float, n_units: int = 3000, seed: int = 3
) -> tuple[dict[str, Any], list[QuantileStats]]:
    rng = np.random.default_rng(seed)
    document = simulated_results("quantiles", units_per_variant=n_units, days=2)
    variants, stats = [], []
    for key, factor in (("control", 1.0), ("treatment", slowdown)):
        values, units = page_loads(rng, n_units, factor)
        block = quantile_stats_from_events(values, units, P90, n_units)
        stats.append(block)
        variants.append(quantile_variant(key, block, values, units))
    metric = {"name": "page_load_p90", "type": "quantile", "definition_hash": "p90hash", "higher_is_better": False,
              "variants": variants}  # fmt: skip
    document["metrics"].append(metric)
    for day in document["daily"]:
        day["metrics"].append(metric)
    return document, stats


def experiment(**metrics: list[str]) -> ExperimentPublic:
    return ExperimentPublic.model_validate({
        "key": "quantiles", "name": "Quantiles", "status": "running", "version": 1, "salt": "q",
        "created_at": "2026-11-20T00:00:00Z", "updated_at": "2026-11-20T00:00:00Z",
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
        "metrics": metrics,
    })  # fmt: skip


def card_for(document: dict[str, Any], **metrics: list[str]) -> dict[str, Any]:
    return build_scorecard(ResultsDocument.model_validate(document), experiment(**metrics))


def test_quantile_comparisons_are_the_engines():
    document, (control, treatment) = document_with_p90(slowdown=1.05)
    card = card_for(document, primary=["conversion"], secondary=["page_load_p90"])
    metric = card["metrics"][1]
    assert metric["type"] == "quantile" and metric["quantile"] == P90
    expected = compare_quantiles("control", control, "treatment", treatment, alpha=0.05)
    # Holm over the primary and secondary family changes only the p-value and significance.
    shown, engine = metric["comparisons"][0], expected.to_dict()
    for field in ("baseline_mean", "variant_mean", "absolute_effect", "relative_effect", "error"):
        assert shown[field] == engine[field]
    assert shown["absolute_ci"] == pytest.approx(engine["absolute_ci"], rel=1e-12)
    assert shown["relative_ci"] == pytest.approx(engine["relative_ci"], rel=1e-12)
    assert shown["p_value"] >= engine["p_value"]
    assert [v["mean"] for v in metric["variants"]] == [control.value, treatment.value]
    assert metric["required_units_per_variant"] is None
    assert len(metric["timeline"]) == 2 and metric["timeline"][-1]["comparisons"][0]["relative_effect"] == (
        pytest.approx(engine["relative_effect"])
    )


def test_a_slower_p90_harms_a_lower_is_better_guardrail():
    document, _ = document_with_p90(slowdown=1.25)
    card = card_for(document, primary=["conversion"], guardrails=["page_load_p90"])
    guardrail = card["metrics"][1]["guardrails"][0]
    assert card["metrics"][1]["comparisons"][0]["relative_effect"] > 0.15
    assert guardrail["harmed"] is True and guardrail["p_value_harm"] < 0.001
    assert card["decision"]["verdict"] == "dont_ship"
    assert any("guardrail page_load_p90 harmed" in reason for reason in card["decision"]["reasons"])


def test_a_faster_p90_passes_the_guardrail():
    document, _ = document_with_p90(slowdown=0.8)
    card = card_for(document, primary=["conversion"], guardrails=["page_load_p90"])
    guardrail = card["metrics"][1]["guardrails"][0]
    assert guardrail["harmed"] is False and guardrail["p_value_harm"] > 0.99


def test_quantile_failures_are_data():
    document, _ = document_with_p90(slowdown=1.0)
    metric = document["metrics"][-1]
    empty = {**metric["variants"][1]["quantile"], "n_events": 0, "value": None, "lower_probability": None,
             "upper_probability": None, "lower_value": None, "upper_value": None, "events_below": 0,
             "events_below_squares": 0, "events_squares": 0, "events_products": 0}  # fmt: skip
    metric["variants"][1] = {**metric["variants"][1], "quantile": empty, "sum": 0.0, "sum_squares": 0.0}
    card = card_for(document, primary=["page_load_p90"])
    comparison = card["metrics"][0]["comparisons"][0]
    assert comparison["error"]["code"] == "empty_variant" and comparison["p_value"] is None
    assert card["metrics"][0]["variants"][1]["mean"] is None
    assert card["decision"]["verdict"] == "keep_running"


def test_the_page_shows_the_quantile_in_the_metrics_format():
    document, (control, _) = document_with_p90(slowdown=1.1)
    card = card_for(document, primary=["conversion"], guardrails=["page_load_p90"])
    groups = metric_groups(card, {"page_load_p90": "duration_ms"})
    shown = next(m for g in groups for m in g["metrics"] if m["name"] == "page_load_p90")
    assert shown["type"] == "p90 (quantile)"
    assert shown["rows"][0]["mean"] == f"{control.value:,.0f} ms"
    assert shown["rows"][1]["absolute"].startswith("+") and shown["rows"][1]["absolute"].endswith(" ms")
    html = (
        environment()
        .get_template("experiment.html")
        .render(card={**card, "governance": {}}, groups=groups, slices=[], quality=[], hypothesis="", signed_in=True)
    )
    assert "p90 (quantile), lower is better" in html and "Mean, ratio or quantile" in html
