"""Tree building, the SVG drawing, and the readout's sentences, on fixed inputs (no services)."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.catalog import parse_catalog
from services.common.registry.models import ExperimentPublic
from services.scorecard.catalog_views import kpi_tree
from services.scorecard.pages.tree import flatten, kpi_tree_svg
from services.scorecard.readout import bottom_line, effect_sentence

CATALOG = parse_catalog("""
metrics:
  - {name: north, type: mean, event: purchase, value: value, owner: finance, north_star: true, status: certified}
  - {name: middle, type: mean, event: purchase, owner: growth, parent: north, format: currency}
  - {name: leaf_a, type: proportion, event: buy, owner: growth, parent: middle, format: percent}
  - {name: leaf_b, type: proportion, event: visit, owner: "<b>web</b>", parent: middle}
  - {name: guard, type: proportion, event: client_error, owner: platform, higher_is_better: false}
""")


def experiment(key: str, status: str, **metrics: list[str]) -> ExperimentPublic:
    return ExperimentPublic.model_validate({
        "key": key, "name": f"Exp {key}", "status": status, "version": 1, "salt": key,
        "created_at": "2026-11-20T00:00:00Z", "updated_at": "2026-11-20T00:00:00Z",
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
        "metrics": metrics,
    })  # fmt: skip


def test_tree_nodes_carry_experiments_by_status_and_role() -> None:
    experiments = [experiment("a", "running", primary=["leaf_a"]), experiment("b", "draft", secondary=["leaf_a"]),
                   experiment("c", "running", guardrails=["leaf_a"])]  # fmt: skip
    tree = kpi_tree(CATALOG, experiments)
    assert [root["name"] for root in tree["trees"]] == ["north"] and [m["name"] for m in tree["outside"]] == ["guard"]
    rows = {row["name"]: row for row in flatten(tree["trees"][0])}
    assert [(name, row["depth"]) for name, row in rows.items()] == [("north", 0), ("middle", 1), ("leaf_a", 2),
                                                                   ("leaf_b", 2)]  # fmt: skip
    leaf = rows["leaf_a"]["experiments"]
    assert list(leaf) == ["running", "draft"]  # guardrail-only experiments do not sit at a node
    assert [(e["key"], e["role"]) for e in leaf["running"]] == [("a", "primary")]
    assert [(e["key"], e["role"]) for e in leaf["draft"]] == [("b", "secondary")]


def test_svg_places_parents_over_children_and_escapes() -> None:
    svg = str(kpi_tree_svg(kpi_tree(CATALOG, [])["trees"][0]))
    assert svg.count("<rect ") == 4 and svg.count('<line class="edge"') == 3
    assert "&lt;b&gt;web&lt;/b&gt;" in svg and "<b>" not in svg and "style=" not in svg
    xs = {name: float(svg.split(f">{name}</text>")[0].rsplit('x="', 1)[1].split('"')[0])
          for name in ("north", "middle", "leaf_a", "leaf_b")}  # fmt: skip
    assert xs["north"] == xs["middle"] == pytest.approx((xs["leaf_a"] + xs["leaf_b"]) / 2)


def comparison(effect: float, low: float, high: float, base: float = 0.1) -> dict[str, Any]:
    return {
        "variant": "treatment",
        "relative_effect": effect,
        "relative_ci": [low, high],
        "baseline_mean": base,
        "variant_mean": base * (1 + effect),
        "absolute_effect": base * effect,
        "significant": low > 0 or high < 0,
    }


def card(verdict: str, primary: dict[str, Any], required: int | None = None) -> dict[str, Any]:
    metric = {"name": "leaf_a", "role": "primary", "comparisons": [primary], "required_units_per_variant": required}
    return {"decision": {"verdict": verdict, "reasons": []}, "metrics": [metric]}


@pytest.mark.parametrize(
    ("verdict", "effect", "required", "expected"),
    [
        ("ship", comparison(0.486, 0.256, 0.715), None,
         "Ship: Exp x raised leaf_a by 48.6% (95% CI 25.6% to 71.5%), from 10.0% to 14.9%; no guardrail was set."),
        ("dont_ship", comparison(-0.1, -0.15, -0.05), None,
         "Don't ship: Exp x lowered leaf_a by 10.0% (95% CI 5.0% to 15.0%), from 10.0% to 9.0%; no guardrail was set."),
        ("keep_running", comparison(0.02, -0.03, 0.07), 12000,
         "Keep running: no clear answer yet; so far Exp x raised leaf_a by 2.0% (95% CI -3.0% to +7.0%), from 10.0% "
         "to 10.2%; about 12,000 users per variant are needed to detect the planned change."),
        ("invalid", comparison(0.3, 0.1, 0.5), None,
         "Do not act on this result: the variants did not receive the share of users they were meant to (or the "
         "logging lost data), so the numbers cannot be trusted; find the cause and restart."),
    ],
)  # fmt: skip
def test_bottom_lines_are_plain_sentences(verdict: str, effect: dict[str, Any], required: int | None,
                                          expected: str) -> None:  # fmt: skip
    line = bottom_line(card(verdict, effect, required), experiment("x", "running", primary=["leaf_a"]), CATALOG, [])
    assert line == expected


def test_effect_sentences_follow_the_metric_format() -> None:
    metric = {"name": "middle", "comparisons": [comparison(0.25, 0.1, 0.4, base=4.0)]}
    assert (
        effect_sentence(metric, "currency", 0.9)
        == "raised middle by 25.0% (90% CI 10.0% to 40.0%), from $4.00 to $5.00"
    )
    assert effect_sentence({"name": "m", "comparisons": []}, "number", 0.95) == "could not measure m yet"
