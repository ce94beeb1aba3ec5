"""Metric catalog: the shipped YAML loads; bad catalogs fail with a sentence naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.metrics.catalog import CatalogError, catalog_version, load_catalog, parse_catalog
from services.metrics.settings import DEFAULT_CATALOG, MetricsSettings

GOOD = """
metrics:
  - {name: conversion, type: proportion, event: purchase, window_hours: 168}
  - {name: revenue, type: mean, event: purchase, value: value}
  - name: revenue_per_session
    type: ratio
    numerator: {event: purchase, value: value}
    denominator: {event: session_start}
"""


def test_shipped_catalog_has_the_example_metrics() -> None:
    catalog = load_catalog(DEFAULT_CATALOG)
    kinds = {metric.name: metric.type for metric in catalog.metrics}
    assert kinds["conversion"] == "proportion"
    assert kinds["revenue"] == "mean"
    assert kinds["revenue_per_session"] == "ratio"
    assert kinds["latency_ms"] == "ratio"
    conversion = catalog.get("conversion")
    assert conversion is not None and conversion.window_hours == 168 and conversion.cuped_lookback_days == 14


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
            "metrics: [{name: a, type: median, event: x}]",
            "metric #1 ('a'): unknown type 'median'; use one of",
        ),
        ("metrics: [{name: a, type: mean}]", "metric #1 ('a'): a mean metric needs 'event'"),
        ("metrics: [{name: a, type: ratio, numerator: {event: x}}]", "needs 'numerator' and 'denominator'"),
        ("metrics: [{name: a, type: proportion, event: x, value: value}]", "it takes no 'value'"),
        (
            "metrics: [{name: a, type: mean, event: x}, {name: a, type: mean, event: y}]",
            "metric names must be unique; repeated: a",
        ),
        (
            "metrics: [{name: a, type: mean, event: x, window_hours: 0}]",
            "window_hours: Input should be greater",
        ),
        (
            "metrics: [{name: a, type: mean, event: x, window_hours: 100000}]",
            "window_hours: Input should be less",
        ),
        ("metrics: [{name: a, type: mean, event: x, window_hours: soon}]", "window_hours"),
        ("metrics: [{name: a, type: mean, event: x, cuped_lookback_days: -1}]", "cuped_lookback_days"),
        ("metrics: [{name: a, type: mean, event: x, colour: red}]", "metric #1 ('a') colour: unknown key"),
        (
            "metrics: [{name: a, type: ratio, numerator: {event: x, weight: 2}, denominator: {event: y}}]",
            "numerator.weight: unknown key",
        ),
        ("metrics: [{name: a, type: mean, event: x, value: price}]", "value: Input should be 'value'"),
        ("metrics: [{name: Bad-Name, type: mean, event: x}]", "name: String should match pattern"),
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
    path.write_text("metrics: [{name: clicks, type: mean, event: click}]\n")
    monkeypatch.setenv("ASSAY_METRICS_CATALOG", str(path))
    settings = MetricsSettings()
    assert [metric.name for metric in load_catalog(settings.metrics_catalog).metrics] == ["clicks"]
