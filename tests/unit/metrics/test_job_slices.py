"""Slices and quantile metrics: the job against the plain-Python reference on a random lake.

The lake holds the generator's imperfections (duplicates, late exposures and events, units
exposed to both variants, events before exposure) plus exposure attributes: absent on some
exposures, differing between a unit's exposures, a value spelt like a reserved label, 25
countries (more than the 20 a dimension keeps), ties at a unit's first exposure time, and
earlier exposures that arrive after the first run and move units to another segment. Two
runs: one on what the lake held at the first as-of, one after the late rows arrived.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from services.common.catalog import parse_catalog
from services.common.results import MAX_SLICE_VALUES, MISSING_SLICE, OTHER_SLICE, ResultsDocument
from services.metrics.job.batch import run_experiments
from services.metrics.job.latest import outer_window_probabilities
from services.metrics.job.run import ExperimentSpec, JobOptions
from services.metrics.job.timeline import HOUR_US, parse_instant
from services.scorecard.stats import quantile as engine
from tests.generator import Generated, generate, rfc3339
from tests.unit.metrics.helpers import with_attributes, write_lake
from tests.unit.metrics.reference import reference_results
from tests.unit.metrics.test_job_reference import assert_same_numbers, strip_hashes

CATALOG = parse_catalog("""
metrics:
  - {name: conversion, type: proportion, event: purchase, window_hours: 96, cuped_lookback_days: 3, owner: test}
  - {name: revenue, type: mean, event: purchase, value: value, cuped_lookback_days: 0, owner: test}
  - name: revenue_per_session
    owner: test
    type: ratio
    numerator: {event: purchase, value: value}
    denominator: {event: session_start}
    cuped_lookback_days: 4
  - {name: latency_p90, type: quantile, quantile: 0.9, event: page_load, value: value, window_hours: 72, owner: test}
  - {name: latency_p30, type: quantile, quantile: 0.3, event: page_load, value: value, cuped_lookback_days: 30,
     owner: test}
""")
VARIANTS = ("control", "treatment")
DIMENSIONS = ("country", "device", "plan")  # nobody sends `plan`: all of it is __missing__
EXPERIMENT = "sliced"


@pytest.fixture(scope="module")
def data() -> Generated:
    return generate(seed=11, units=260, days=6, experiment=EXPERIMENT)


@pytest.fixture(scope="module")
def instants(data: Generated) -> tuple[str, str]:
    return rfc3339(data.truth.first_as_of - timedelta(days=3)), rfc3339(data.truth.final_as_of)


@pytest.fixture(scope="module")
def records(data: Generated, instants: tuple[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return with_attributes(data.exposures, seed=5, late_after=instants[0]), data.events


def received_by(rows: list[dict[str, Any]], after: str | None, until: str) -> list[dict[str, Any]]:
    def keep(row: dict[str, Any]) -> bool:
        moment = datetime.fromisoformat(row["received_at"])
        return (after is None or moment > datetime.fromisoformat(after)) and moment <= datetime.fromisoformat(until)

    return [row for row in rows if keep(row)]


@pytest.fixture(scope="module")
def runs(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory, records: Any,
         instants: tuple[str, str]) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
    """(as-of, published document) before and after the late rows reach the lake."""
    lake, results = tmp_path_factory.mktemp("lake"), tmp_path_factory.mktemp("results")
    exposures, events = records
    spec = ExperimentSpec(EXPERIMENT, VARIANTS, dimensions=DIMENSIONS)
    published, after, offset = [], None, 0
    for as_of in instants:
        batch = (received_by(exposures, after, as_of), received_by(events, after, as_of))
        offset += write_lake(lake, *batch, first_offset=offset)
        options = JobOptions(parse_instant(as_of), 72 * HOUR_US, HOUR_US)
        documents, failures, _ = run_experiments(spark, lake, results, [spec], CATALOG, options)
        assert failures == 0
        published.append((as_of, documents[0].model_dump(mode="json")))
        after = as_of
    return published


def reference_for(records: Any, as_of: str) -> dict[str, Any]:
    exposures, events = records
    return reference_results(
        exposures, events, experiment=EXPERIMENT, metrics=CATALOG.metrics, variants=VARIANTS, as_of=as_of,
        dimensions=DIMENSIONS,
    )  # fmt: skip


def assert_slices_equal(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [(s["dimension"], s["value"]) for s in got] == [(s["dimension"], s["value"]) for s in want]
    for mine, theirs in zip(got, want, strict=True):
        where = f"{mine['dimension']}={mine['value']}"
        assert mine["variants"] == theirs["variants"], where
        assert_same_numbers(strip_hashes(mine["metrics"]), theirs["metrics"], where)


@pytest.mark.parametrize("stage", [0, 1], ids=["first-as-of", "after-late-rows"])
def test_slices_and_quantiles_equal_the_reference(runs: list[tuple[str, dict[str, Any]]], records: Any,
                                                  stage: int) -> None:  # fmt: skip
    as_of, document = runs[stage]
    reference = reference_for(records, as_of)
    quality = document["data_quality"]
    assert quality == reference["data_quality"]
    assert quality["duplicate_events"] > 0 and quality["multiple_variant_units"] > 0
    assert quality["late_events_included"] > 0 and quality["events_before_exposure"] > 0
    assert document["variants"] == reference["variants"]
    assert_same_numbers(strip_hashes(document["metrics"]), reference["metrics"], "metrics")
    assert document["dimensions"] == list(DIMENSIONS)
    assert_slices_equal(document["slices"], reference["slices"])
    for got, want in zip(document["daily"], reference["daily"], strict=True):  # quantile metrics left out
        assert_same_numbers(strip_hashes(got["metrics"]), want["metrics"], got["date"])


def test_late_rows_moved_units_between_slices(runs: list[tuple[str, dict[str, Any]]]) -> None:
    """The comparison above covers a real change: the late, earlier exposures moved units."""
    before, after = ({(s["dimension"], s["value"]): s["variants"] for s in doc["slices"]} for _, doc in runs)
    assert ("device", "tv") not in before and ("device", "tv") in after
    assert before != after


def test_slices_of_a_dimension_add_up_to_the_whole(runs: list[tuple[str, dict[str, Any]]]) -> None:
    _, document = runs[-1]
    for dimension in DIMENSIONS:
        slices = [s for s in document["slices"] if s["dimension"] == dimension]
        for key in VARIANTS:
            assert sum(s["variants"][key]["units"] for s in slices) == document["variants"][key]["units"]
        for index, metric in enumerate(document["metrics"]):
            for position, whole in enumerate(metric["variants"]):
                parts = [s["metrics"][index]["variants"][position] for s in slices]
                assert sum(p["n"] for p in parts) == whole["n"]
                total = sum((Decimal(repr(p["sum"])) for p in parts), Decimal(0))
                assert float(total) == pytest.approx(whole["sum"], rel=1e-12), (dimension, metric["name"])


def test_values_beyond_the_top_20_are_other_and_absent_ones_missing(runs: list[tuple[str, dict[str, Any]]]) -> None:
    _, document = runs[-1]
    countries = [s for s in document["slices"] if s["dimension"] == "country"]
    values = [s["value"] for s in countries]
    assert len(values) == MAX_SLICE_VALUES + 2 and values[-2:] == [OTHER_SLICE, MISSING_SLICE]
    units = [sum(v["units"] for v in s["variants"].values()) for s in countries[:MAX_SLICE_VALUES]]
    assert units == sorted(units, reverse=True)
    other = sum(countries[-2]["variants"][key]["units"] for key in VARIANTS)
    assert other > 0 and min(units) >= 1
    assert [s["value"] for s in document["slices"] if s["dimension"] == "plan"] == [MISSING_SLICE]


def test_quantile_blocks_feed_the_scorecard_engine(runs: list[tuple[str, dict[str, Any]]]) -> None:
    _, document = runs[-1]
    model = ResultsDocument.model_validate(document)
    p90 = model.metric("latency_p90")
    assert p90 is not None and p90.type == "quantile"
    stats = []
    for variant in p90.variants:
        block = variant.quantile
        assert block is not None and block.value is not None and variant.covariate is None
        assert block.lower_value is not None and block.upper_value is not None
        assert block.lower_probability is not None and block.upper_probability is not None
        assert block.lower_value <= block.value <= block.upper_value
        stats.append(engine.QuantileStats(
            probability=block.probability, n_units=variant.n, n_events=block.n_events, value=block.value,
            lower_probability=block.lower_probability, upper_probability=block.upper_probability,
            lower_value=block.lower_value, upper_value=block.upper_value, events_below=block.events_below,
            events_below_squares=block.events_below_squares, events_squares=block.events_squares,
            events_products=block.events_products,
        ))  # fmt: skip
    result = engine.quantile_test(stats[0], stats[1])
    assert isinstance(result, engine.QuantileTestResult), result
    assert all(metric["name"] not in ("latency_p90", "latency_p30") for day in document["daily"]
               for metric in day["metrics"])  # fmt: skip


@pytest.mark.parametrize("probability", [0.01, 0.3, 0.5, 0.9, 0.95, 0.999])
def test_the_outer_window_is_the_scorecards(probability: float) -> None:
    for n_events in (1, 2, 7, 10, 99, 1000, 123_457):
        assert outer_window_probabilities(probability, n_events) == engine.outer_window_probabilities(
            probability, n_events
        )


def test_an_experiment_without_dimensions_or_quantiles_has_no_slices(spark: SparkSession, tmp_path: Path,
                                                                     records: Any) -> None:  # fmt: skip
    exposures, events = records
    write_lake(tmp_path / "lake", exposures[:200], events[:400])
    catalog = parse_catalog("metrics:\n  - {name: revenue, type: mean, event: purchase, value: value, owner: t}\n")
    options = JobOptions(parse_instant("2026-10-20T00:00:00Z"))
    spec = ExperimentSpec(EXPERIMENT, VARIANTS)
    [document], failures, _ = run_experiments(spark, tmp_path / "lake", tmp_path / "results", [spec], catalog, options)
    assert failures == 0 and document.slices == () and document.dimensions == ()
    assert b'"slices"' not in document.to_json() and b'"quantile"' not in document.to_json()
