"""The job on generated data (through lake files) against the plain-Python reference.

One module-scoped run through the CLI entry point serves most tests; the data set holds
duplicates, late and multi-variant units, events before exposure and outside windows.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from services.common.catalog import catalog_version, load_catalog
from services.common.results import ResultsDocument
from services.metrics.__main__ import parse_args
from services.metrics.job.cli import run_command
from services.metrics.job.run import ExperimentSpec, JobOptions, load_events, run_experiment
from services.metrics.job.timeline import HOUR_US, Timeline, parse_instant
from services.metrics.settings import DEFAULT_CATALOG, MetricsSettings
from services.scorecard.stats.payload import analyze_payload
from tests.generator import Generated, generate, rfc3339
from tests.unit.metrics.helpers import write_lake
from tests.unit.metrics.reference import reference_results

VARIANTS = ("control", "treatment")
CATALOG = load_catalog(DEFAULT_CATALOG)


def strip_hashes(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The statistics part of metric entries (the reference knows nothing of hashes or direction)."""
    return [{k: v for k, v in metric.items() if k not in ("definition_hash", "higher_is_better")} for metric in metrics]


def assert_same_numbers(got: Any, want: Any, where: str = "") -> None:
    """Same shape; integers (counts) exactly, floats to 1e-9 relative (both sides are exact
    decimals converted once, so in practice they are equal)."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            assert_same_numbers(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for index, (left, right) in enumerate(zip(got, want, strict=True)):
            assert_same_numbers(left, right, f"{where}[{index}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9), where
    else:
        assert got == want and type(got) is type(want), where


def assert_statistics_equal(job: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert_same_numbers(strip_hashes(job), expected, "metrics")


@pytest.fixture(scope="module")
def data() -> Generated:
    return generate(seed=3, units=400)


NO_REGISTRY = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, data: Generated) -> MetricsSettings:
    # No registry (port 1 refuses): the flags define the run, whatever runs on this machine.
    settings = MetricsSettings(env="test", data_dir=tmp_path_factory.mktemp("assay"), redis_url=NO_REGISTRY)
    write_lake(settings.lake_dir, data.exposures, data.events)
    # Unreadable files where this run must never look: far outside its dates, and another
    # experiment's exposures on a date it does read.
    far = settings.lake_dir / "assay.events" / "date=2026-01-15"
    far.mkdir(parents=True)
    (far / "part-corrupt.parquet").write_bytes(b"not parquet at all")
    other = settings.lake_dir / "assay.exposures" / "date=2026-10-03" / "experiment=unrelated"
    other.mkdir(parents=True)
    (other / "part-corrupt.parquet").write_bytes(b"not parquet either")
    return settings


@pytest.fixture(scope="module")
def as_of(data: Generated) -> str:
    return rfc3339(data.truth.first_as_of + timedelta(hours=7))


@pytest.fixture(scope="module")
def document(spark: SparkSession, settings: MetricsSettings, data: Generated, as_of: str) -> dict[str, Any]:
    argv = ["run", "--experiments", f"{data.truth.experiment},never-started", "--as-of", as_of,
            "--variants", ",".join(VARIANTS)]  # fmt: skip
    assert run_command(parse_args(argv), settings, spark) == 0
    latest = settings.results_path / data.truth.experiment / "latest.json"
    return dict(json.loads(latest.read_text()))


@pytest.fixture(scope="module")
def reference(data: Generated, as_of: str) -> dict[str, Any]:
    return reference_results(
        data.exposures, data.events, experiment=data.truth.experiment, metrics=CATALOG.metrics,
        variants=VARIANTS, as_of=as_of,
    )  # fmt: skip


def test_latest_statistics_equal_the_reference(document: dict[str, Any], reference: dict[str, Any]) -> None:
    assert document["variants"] == reference["variants"]
    assert_statistics_equal(document["metrics"], reference["metrics"])
    assert [m["name"] for m in document["metrics"]] == [m.name for m in CATALOG.metrics]


def test_daily_snapshots_equal_the_reference(document: dict[str, Any], reference: dict[str, Any]) -> None:
    assert [(d["date"], d["final"]) for d in document["daily"]] == [(d["date"], d["final"]) for d in reference["daily"]]
    assert any(d["final"] for d in document["daily"]) and not document["daily"][-1]["final"]
    for got, want in zip(document["daily"], reference["daily"], strict=True):
        assert got["variants"] == want["variants"], got["date"]
        assert_statistics_equal(got["metrics"], want["metrics"])
    # the last day is the latest (quantile metrics are in the latest results only: docs/metrics.md)
    assert document["daily"][-1]["metrics"] == [m for m in document["metrics"] if m["type"] != "quantile"]


def test_data_quality_equals_the_reference(document: dict[str, Any], reference: dict[str, Any],
                                           data: Generated) -> None:  # fmt: skip
    quality = document["data_quality"]
    assert quality == reference["data_quality"]
    assert quality["duplicate_events"] > 0 and quality["multiple_variant_units"] > 0
    assert quality["late_events_included"] > 0 and quality["late_after_freeze"] > 0
    assert quality["events_without_exposure"] > 0 and quality["events_before_exposure"] > 0


def test_document_header(document: dict[str, Any], as_of: str) -> None:
    assert document["as_of"] == as_of.replace(".000Z", ".000000Z")
    assert document["catalog_version"] == catalog_version(CATALOG.metrics)
    assert document["first_exposure_date"] == "2026-10-01" and document["missing_metrics"] == []
    revenue = next(m for m in document["metrics"] if m["name"] == "revenue")
    assert revenue["definition_hash"] == CATALOG.get("revenue").definition_hash  # type: ignore[union-attr]


def test_experiment_without_exposures_gets_an_empty_document(settings: MetricsSettings,
                                                             document: dict[str, Any]) -> None:  # fmt: skip
    empty = json.loads((settings.results_path / "never-started" / "latest.json").read_text())
    assert empty["data_quality"]["exposures"] == 0 and empty["daily"] == []
    assert empty["variants"] == {"control": {"units": 0}, "treatment": {"units": 0}}
    assert all(v["n"] == 0 for m in empty["metrics"] for v in m["variants"])


def test_rerun_is_identical_and_kept_as_history(
    spark: SparkSession, settings: MetricsSettings, data: Generated, document: dict[str, Any], as_of: str
) -> None:
    options = JobOptions(parse_instant(as_of), 72 * HOUR_US, HOUR_US)
    spec = ExperimentSpec(data.truth.experiment, VARIANTS)
    again = run_experiment(spark, settings.lake_dir, settings.results_path, spec, CATALOG, options)
    assert again.computed_at != document["computed_at"]
    assert again.model_copy(update={"computed_at": document["computed_at"]}) == ResultsDocument.model_validate(document)
    base = settings.results_path / data.truth.experiment
    history = sorted(p.name for p in (base / "history").iterdir())
    assert history == sorted(f"{computed_at}.json" for computed_at in (document["computed_at"], again.computed_at))
    assert (base / "latest.json").read_bytes() == again.to_json()


def test_published_bytes_are_the_results_model(settings: MetricsSettings, data: Generated,
                                               document: dict[str, Any]) -> None:  # fmt: skip
    """The file validates against the shared model with unknown fields forbidden, and the
    model writes it back byte for byte (counts as integers, sums as the same floats)."""
    published = (settings.results_path / data.truth.experiment / "latest.json").read_bytes()
    model = ResultsDocument.model_validate_json(published)
    assert model.to_json() == published
    for metric in model.metrics:  # the CUPED and ratio blocks exactly where the catalog asks for them
        definition = CATALOG.get(metric.name)
        assert definition is not None
        cuped = definition.cuped_lookback_days > 0 and definition.type != "quantile"  # quantiles: no CUPED
        ratio = definition.type == "ratio"
        assert all((variant.quantile is not None) == (definition.type == "quantile") for variant in metric.variants)
        for variant in metric.variants:
            assert (variant.covariate is not None, variant.denominator is not None) == (cuped, ratio), metric.name
            products = variant.covariate.denominator_products if variant.covariate else None
            assert (products is not None) == (cuped and ratio), metric.name
    assert any(m.type == "ratio" and m.variants[0].covariate for m in model.metrics)  # all shapes covered


def test_only_partitions_that_can_matter_are_read(spark: SparkSession, settings: MetricsSettings,
                                                 data: Generated, as_of: str) -> None:  # fmt: skip
    # The corrupt files planted by the `settings` fixture did not break the run; and the
    # events frame opens only files from the CUPED lookback before day 0 through as-of.
    as_of_us = parse_instant(as_of)
    timeline = Timeline.build(parse_instant("2026-10-01T00:00:00Z"), as_of_us, 72 * HOUR_US)
    frame = load_events(spark, settings.lake_dir, CATALOG.metrics, timeline, JobOptions(as_of_us))
    dates = {date.fromisoformat(Path(f).parent.name.removeprefix("date=")) for f in frame.inputFiles()}
    partitions = (settings.lake_dir / "assay.events").iterdir()
    lake_dates = {date.fromisoformat(p.name.removeprefix("date=")) for p in partitions}
    assert dates == {d for d in lake_dates if date(2026, 9, 17) <= d <= date(2026, 10, 13)}
    assert min(lake_dates) < date(2026, 9, 17)  # there was something to leave out


def test_a_corrupt_file_the_run_needs_fails_loudly(spark: SparkSession, tmp_path: Path, data: Generated) -> None:
    write_lake(tmp_path, data.exposures[:5], [])
    day = tmp_path / "assay.events" / f"date={data.exposures[0]['timestamp'][:10]}"
    day.mkdir(parents=True)
    (day / "part-corrupt.parquet").write_bytes(b"garbage")
    spec = ExperimentSpec(data.exposures[0]["experiment"])
    options = JobOptions(parse_instant("2026-10-20T00:00:00Z"))
    with pytest.raises(Exception, match=r"(?i)parquet|corrupt|magic"):
        run_experiment(spark, tmp_path, tmp_path / "results", spec, CATALOG, options)
    assert not (tmp_path / "results").exists()


def test_results_feed_the_scorecard_engine(document: dict[str, Any]) -> None:
    reductions = {}
    for metric in document["metrics"]:
        quantile = metric["type"] == "quantile"
        described = {"name": metric["name"], "type": metric["type"]}
        if quantile:
            described["quantile"] = metric["variants"][0]["quantile"]["probability"]
        body = {"metric": described, "variants": metric["variants"], "cuped": not quantile}
        result = analyze_payload(body)
        assert result.ok, result.errors
        [comparison] = result.comparisons
        assert comparison.error is None, (metric["name"], comparison.error)
        reductions[metric["name"]] = None if quantile else comparison.cuped.variance_reduction
    # The generator's pre-period activity predicts the post-period: CUPED must pay off.
    assert reductions["sessions"] > 0.2 and reductions["revenue"] > 0.02
