"""Metric catalog: the shipped YAML loads as a KPI tree; bad catalogs fail with a sentence naming
the problem; definition hashes (which results documents carry) never move."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.assignment.settings import AssignmentSettings
from services.common.catalog import CatalogError, catalog_version, load_catalog, parse_catalog
from services.metrics.settings import DEFAULT_CATALOG, MetricsSettings
from services.scorecard.settings import ScorecardSettings

GOOD = """
metrics:
  - {name: conversion, type: proportion, event: purchase, window_hours: 168, owner: growth}
  - {name: revenue, type: mean, event: purchase, value: value, owner: growth}
  - name: revenue_per_session
    type: ratio
    owner: growth
    numerator: {event: purchase, value: value}
    denominator: {event: session_start}
"""
# The hashes results documents already carry: the catalog's new fields must not move them.
PUBLISHED_HASHES = {
    "conversion": "9245a1c2d4d30318", "revenue": "8ac7bfa742ec685b", "revenue_per_session": "ac46a0d821a1237b",
    "sessions": "85877b775fabff55", "latency_ms": "fbdee93867ce881e", "error_rate": "23f601c6e2876c6d",
}  # fmt: skip
TREE = """
metrics:
  - {name: north, type: mean, event: purchase, value: value, owner: finance, north_star: true, status: certified}
  - {name: middle, type: mean, event: purchase, owner: growth, parent: north}
  - {name: leaf, type: proportion, event: purchase, owner: growth, parent: middle}
  - {name: other_leaf, type: proportion, event: visit, owner: growth, parent: north}
  - {name: outside, type: proportion, event: client_error, owner: platform}
"""


def m(name: str, **fields: str) -> str:
    extra = "".join(f", {key}: {value}" for key, value in fields.items())
    return f"  - {{name: {name}, type: mean, event: x{extra}}}\n"


def test_shipped_catalog_has_the_example_metrics() -> None:
    catalog = load_catalog(DEFAULT_CATALOG)
    kinds = {metric.name: metric.type for metric in catalog.metrics}
    assert kinds["conversion"] == "proportion"
    assert kinds["revenue"] == "mean"
    assert kinds["revenue_per_session"] == "ratio"
    assert kinds["latency_ms"] == "ratio"
    conversion = catalog.get("conversion")
    assert conversion is not None and conversion.window_hours == 168 and conversion.cuped_lookback_days == 14


def test_shipped_catalog_is_a_kpi_tree_under_weekly_revenue() -> None:
    catalog = load_catalog(DEFAULT_CATALOG)
    assert [metric.name for metric in catalog.north_stars()] == ["weekly_revenue"]
    assert catalog.path_to_root("conversion") == ["conversion", "revenue", "weekly_revenue"]
    assert {metric.name for metric in catalog.children("revenue")} >= {"conversion", "sessions"}
    for guardrail in ("latency_ms", "error_rate"):  # outside the tree
        metric = catalog.get(guardrail)
        assert metric is not None and metric.parent is None and not metric.higher_is_better
    assert all(metric.owner for metric in catalog.metrics)
    weekly = catalog.get("weekly_revenue")
    assert weekly is not None and weekly.status == "certified" and weekly.format == "currency"


def test_shipped_definitions_keep_the_hashes_results_documents_carry() -> None:
    catalog = load_catalog(DEFAULT_CATALOG)
    assert {name: catalog.get(name).definition_hash for name in PUBLISHED_HASHES} == PUBLISHED_HASHES  # type: ignore[union-attr]


def test_governance_fields_do_not_change_the_hash() -> None:
    plain = parse_catalog(TREE).get("leaf")
    governed = parse_catalog(TREE.replace("parent: middle}", "parent: north, status: certified, format: percent, "
                                          "tags: [a, b], contact: x@example.com, owner: other}"))  # fmt: skip
    assert plain is not None and governed.get("leaf") is not None
    assert governed.get("leaf").definition_hash == plain.definition_hash  # type: ignore[union-attr]


def test_tree_navigation() -> None:
    catalog = parse_catalog(TREE)
    assert catalog.path_to_root("leaf") == ["leaf", "middle", "north"]
    assert catalog.path_to_root("outside") == ["outside"] and catalog.path_to_root("nope") == []
    assert [metric.name for metric in catalog.children("north")] == ["middle", "other_leaf"]
    leaf = catalog.get("leaf")
    assert leaf is not None and leaf.status == "draft" and leaf.format == "number" and leaf.tags == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics: [{name: a, type: mean, event: x}]", "metric #1 ('a'): needs an 'owner': the team that answers"),
        ("metrics: [{name: a, type: mean, event: x, owner: ''}]", "needs an 'owner'"),
        ("metrics:\n" + m("a", owner="o", parent="ghost"),
         "metric 'a' names parent 'ghost', which the catalog does not define; add 'ghost' or correct the name"),
        ("metrics:\n" + m("a", owner="o", parent="b") + m("b", owner="o", parent="c") + m("c", owner="o", parent="a"),
         "metrics 'a' -> 'b' -> 'c' -> 'a' form a cycle; remove one of their 'parent' links"),
        ("metrics:\n" + m("a", owner="o", parent="a"), "metric #1 ('a'): names itself as its parent"),
        ("metrics:\n" + m("a", owner="o", parent="[b, c]") + m("b", owner="o") + m("c", owner="o"),
         "metric #1 ('a'): lists 2 parents (b, c); a metric drives exactly one metric in the KPI tree"),
        ("metrics:\n" + m("a", owner="o", parent="b") + m("b", owner="o", status="deprecated"),
         "metric 'a' hangs under 'b', which is deprecated; move it under the metric that replaced 'b'"),
        ("metrics:\n" + m("a", owner="o", north_star="true", parent="b") + m("b", owner="o"),
         "is a North Star (a root of the KPI tree) but names parent 'b'; remove 'parent' or 'north_star'"),
        ("metrics:\n" + m("a", owner="o", status="retired"), "status: Input should be 'draft', 'certified'"),
        ("metrics:\n" + m("a", owner="o", format="euros"), "format: Input should be 'number', 'percent'"),
    ],
)  # fmt: skip
def test_invalid_trees_and_governance_are_rejected_with_a_clear_reason(text: str, message: str) -> None:
    with pytest.raises(CatalogError) as error:
        parse_catalog(text, "catalog.yaml")
    assert message in str(error.value)


def test_a_deprecated_metric_may_sit_under_a_deprecated_parent() -> None:
    catalog = parse_catalog("metrics:\n" + m("a", owner="o", parent="b", status="deprecated")
                            + m("b", owner="o", status="deprecated"))  # fmt: skip
    assert catalog.path_to_root("a") == ["a", "b"]


def test_definitions_parse_to_measures() -> None:
    catalog = parse_catalog(GOOD)
    ratio = catalog.get("revenue_per_session")
    assert ratio is not None and ratio.denominator is not None
    assert ratio.numerator_measure.event == "purchase" and ratio.numerator_measure.value == "value"
    assert ratio.denominator.value is None  # a count of session_start events
    assert ratio.event_names == {"purchase", "session_start"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "metrics: [{name: a, owner: o, type: median, event: x}]",
            "metric #1 ('a'): unknown type 'median'; use one of",
        ),
        ("metrics: [{name: a, owner: o, type: mean}]", "metric #1 ('a'): a mean metric needs 'event'"),
        ("metrics: [{name: a, owner: o, type: ratio, numerator: {event: x}}]", "needs 'numerator' and 'denominator'"),
        ("metrics: [{name: a, owner: o, type: proportion, event: x, value: value}]", "it takes no 'value'"),
        (
            "metrics: [{name: a, owner: o, type: mean, event: x}, {name: a, owner: o, type: mean, event: y}]",
            "metric names must be unique; repeated: a",
        ),
        (
            "metrics: [{name: a, owner: o, type: mean, event: x, window_hours: 0}]",
            "window_hours: Input should be greater",
        ),
        (
            "metrics: [{name: a, owner: o, type: mean, event: x, window_hours: 100000}]",
            "window_hours: Input should be less",
        ),
        ("metrics: [{name: a, owner: o, type: mean, event: x, window_hours: soon}]", "window_hours"),
        ("metrics: [{name: a, owner: o, type: mean, event: x, cuped_lookback_days: -1}]", "cuped_lookback_days"),
        ("metrics: [{name: a, owner: o, type: mean, event: x, colour: red}]", "metric #1 ('a') colour: unknown key"),
        (
            "metrics: [{name: a, owner: o, type: ratio, numerator: {event: x, weight: 2}, denominator: {event: y}}]",
            "numerator.weight: unknown key",
        ),
        ("metrics: [{name: a, owner: o, type: mean, event: x, value: price}]", "value: Input should be 'value'"),
        ("metrics: [{name: Bad-Name, owner: o, type: mean, event: x}]", "name: String should match pattern"),
        ("metrics: []", "metrics: List should have at least 1 item"),
        ("metric: []", "unknown key"),
        ("- just a list", "expected a mapping with a 'metrics' list"),
        ("metrics: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_catalogs_are_rejected_with_a_clear_reason(text: str, message: str) -> None:
    with pytest.raises(CatalogError) as error:
        parse_catalog(text, "catalog.yaml")
    assert str(error.value).startswith("catalog.yaml: ")
    assert message in str(error.value)


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the metric catalog"):
        load_catalog(tmp_path / "absent.yaml")


def test_hash_changes_with_the_definition_but_not_with_the_description() -> None:
    base = parse_catalog(GOOD)
    conversion = base.get("conversion")
    assert conversion is not None
    reworded = parse_catalog(GOOD.replace("window_hours: 168}", "window_hours: 168, description: New}"))
    widened = parse_catalog(GOOD.replace("window_hours: 168", "window_hours: 336"))
    assert reworded.get("conversion").definition_hash == conversion.definition_hash  # type: ignore[union-attr]
    assert widened.get("conversion").definition_hash != conversion.definition_hash  # type: ignore[union-attr]
    assert catalog_version(widened.metrics) != catalog_version(base.metrics)
    assert catalog_version(list(reversed(base.metrics))) == catalog_version(base.metrics)
    assert len({metric.definition_hash for metric in base.metrics}) == len(base.metrics)


def test_select_keeps_catalog_order_and_reports_unknown_names() -> None:
    catalog = parse_catalog(GOOD)
    chosen, unknown = catalog.select(["revenue", "nope", "conversion"])
    assert [metric.name for metric in chosen] == ["conversion", "revenue"]
    assert unknown == ["nope"]


def test_catalog_path_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("metrics: [{name: clicks, type: mean, event: click, owner: web}]\n")
    monkeypatch.setenv("ASSAY_METRICS_CATALOG", str(path))
    monkeypatch.setenv("ASSAY_ENV", "dev")
    for settings in (MetricsSettings(), AssignmentSettings(), ScorecardSettings()):  # every service reads it
        assert [metric.name for metric in load_catalog(settings.metrics_catalog).metrics] == ["clicks"]
