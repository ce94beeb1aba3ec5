"""Many experiments in one pass give each exactly the document it gets alone.

One random lake holds three experiments over the same population (the generator's unit ids
overlap), each with its own start date (so its own day 0, frozen days and lookback), metric
subset, dimensions and variant order, plus duplicates, late exposures and events, units exposed
to both variants, events before exposure, exposure attributes, copies of an event that
disagree on name, time or unit, and another experiment's exposures; a fourth requested
experiment has no exposures at all. The one-pass run must publish, for every experiment, the
document a run of that experiment alone publishes (bar `computed_at`), and read each
lake file once.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from services.common.catalog import parse_catalog
from services.metrics.job import transforms as tf
from services.metrics.job.batch import RunStats, run_experiments
from services.metrics.job.run import ExperimentSpec, JobOptions
from services.metrics.job.timeline import HOUR_US, parse_instant
from tests.generator import generate, rfc3339
from tests.unit.metrics.helpers import CATALOG_TEXT, with_attributes, write_lake

CATALOG = parse_catalog(CATALOG_TEXT)
SPECS = (
    ExperimentSpec("exp-a", ("control", "treatment"), dimensions=("country", "device")),
    ExperimentSpec("exp-b", ("control", "treatment"), ("latency_ms", "error_rate", "not_in_catalog")),
    ExperimentSpec(
        "exp-c",
        ("treatment", "control"),
        ("conversion", "sessions", "revenue_per_session", "latency_p90"),
        dimensions=("device",),
    ),
    ExperimentSpec("never-started", ("control", "treatment")),
)
STARTS = {"exp-a": datetime(2026, 10, 1, tzinfo=UTC), "exp-b": datetime(2026, 10, 4, tzinfo=UTC),
          "exp-c": datetime(2026, 9, 27, tzinfo=UTC)}  # fmt: skip
AS_OF = rfc3339(datetime(2026, 10, 13, 7, tzinfo=UTC))


def published(results_dir: Path, key: str) -> dict[str, Any]:
    document = json.loads((results_dir / key / "latest.json").read_text())
    document.pop("computed_at")
    return dict(document)


def conflicting_copies(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of some events that disagree with the original (another name, a time days
    earlier, another unit), some received before it: the SDKs never send them, but the
    one-pass de-duplication must still give each experiment what it gets alone."""
    names = sorted({event["name"] for event in events})
    units = sorted({event["unit_id"] for event in events})
    copies = []
    for index, event in enumerate(events[::9]):
        copy, change = dict(event), index % 3
        if change == 0:
            copy["name"] = names[(names.index(event["name"]) + 1) % len(names)]
        elif change == 1:
            copy["timestamp"] = rfc3339(datetime.fromisoformat(event["timestamp"]) - timedelta(days=3))
        else:
            copy["unit_id"] = units[(units.index(event["unit_id"]) + 1) % len(units)]
        shift = timedelta(seconds=-1 if index % 2 else 1)  # half of them win
        copy["received_at"] = rfc3339(datetime.fromisoformat(event["received_at"]) + shift)
        copies.append(copy)
    return copies


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake_dir = tmp_path_factory.mktemp("lake")
    exposures, events = [], []
    for seed, (key, start) in enumerate(STARTS.items(), start=41):
        data = generate(seed=seed, units=120, days=8, experiment=key, start=start)
        exposures += with_attributes(data.exposures, seed)
        events += data.events
    write_lake(lake_dir, exposures, events + conflicting_copies(events))
    return lake_dir


@pytest.fixture(scope="module")
def options() -> JobOptions:
    return JobOptions(parse_instant(AS_OF), 72 * HOUR_US, HOUR_US)


@pytest.fixture(scope="module")
def together(spark: SparkSession, lake: Path, options: JobOptions,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunStats]:  # fmt: skip
    results = tmp_path_factory.mktemp("together")
    _, failures, stats = run_experiments(spark, lake, results, SPECS, CATALOG, options)
    assert failures == 0
    return results, stats


def test_event_ids_whose_hashes_collide_cost_time_not_results(
    spark: SparkSession, lake: Path, options: JobOptions, together: tuple[Path, RunStats], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Every event_id hashed alike, as if all of them collided: every event is then
    de-duplicated per experiment by its id (`tf.conflicting_rows`), and every document is
    still the one the pass publishes with real hashes."""
    monkeypatch.setattr(tf, "id_hash", lambda: F.lit(7).cast("long"))
    hashes_seen: list[int] = []
    conflicting_rows = tf.conflicting_rows

    def recorded(relevant: DataFrame, hashes: DataFrame, scopes: DataFrame) -> DataFrame:
        hashes_seen.extend(row["id_hash"] for row in hashes.collect())
        return conflicting_rows(relevant, hashes, scopes)

    monkeypatch.setattr(tf, "conflicting_rows", recorded)
    _, failures, _ = run_experiments(spark, lake, tmp_path, SPECS, CATALOG, options)
    assert failures == 0
    assert hashes_seen == [7]  # every event took the exact path
    for spec in SPECS:
        assert published(tmp_path, spec.key) == published(together[0], spec.key), spec.key


@pytest.mark.parametrize("spec", SPECS, ids=[spec.key for spec in SPECS])
def test_each_experiment_gets_the_document_it_gets_alone(
    spark: SparkSession, lake: Path, options: JobOptions, together: tuple[Path, RunStats], spec: ExperimentSpec,
    tmp_path: Path,
) -> None:  # fmt: skip
    _, failures, alone_stats = run_experiments(spark, lake, tmp_path, [spec], CATALOG, options)
    assert failures == 0
    got, want = published(together[0], spec.key), published(tmp_path, spec.key)
    assert got == want
    if spec.key != "never-started":
        quality = want["data_quality"]
        assert quality["duplicate_events"] > 0 and quality["units"] > 0 and want["daily"]
        assert alone_stats.files_read < together[1].files_read  # the pass reads the union...


@pytest.mark.parametrize("collide", [False, True], ids=["hashes", "every-id-collides"])
def test_the_unit_arrays_publish_what_the_spark_frames_publish(
    spark: SparkSession, lake: Path, options: JobOptions, together: tuple[Path, RunStats], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, collide: bool,
) -> None:  # fmt: skip
    """The pass's per-unit arithmetic in numpy (`unitmath`, the default) and as Spark frames
    (`unit_arrays=False`) publish the same documents: every daily statistic, data-quality
    count, slice and quantile block, with late exposures that move units between segments,
    units in both variants, copies that disagree (all of them, when every id collides)."""
    if collide:
        monkeypatch.setattr(tf, "id_hash", lambda: F.lit(7).cast("long"))
    frames = replace(options, unit_arrays=False)
    _, failures, _ = run_experiments(spark, lake, tmp_path, SPECS, CATALOG, frames)
    assert failures == 0
    for spec in SPECS:
        assert published(tmp_path, spec.key) == published(together[0], spec.key), spec.key


def test_packed_quantile_values_publish_what_the_spark_frames_publish(
    spark: SparkSession, lake: Path, options: JobOptions, tmp_path: Path
) -> None:  # fmt: skip
    """Without dimensions the arrays hand each experiment's quantile values over packed, a
    few binary rows per partition (`unitmath._Units.quantiles`): the blocks are those of the
    Spark frames, and the documents the same, with exp-a's dimensions back on beside them."""
    specs = [replace(spec, dimensions=()) if spec.key == "exp-c" else spec for spec in SPECS]
    documents = []
    for arrays in (True, False):
        results = tmp_path / str(arrays)
        _, failures, _ = run_experiments(spark, lake, results, specs, CATALOG, replace(options, unit_arrays=arrays))
        assert failures == 0
        documents.append({spec.key: published(results, spec.key) for spec in specs})
    assert documents[0] == documents[1]
    [p90] = [m for m in documents[0]["exp-c"]["metrics"] if m["name"] == "latency_p90"]
    assert all(v["quantile"]["n_events"] > 0 for v in p90["variants"]) and "slices" not in documents[0]["exp-c"]


def test_the_pass_reads_each_file_once_and_reports_what_it_read(together: tuple[Path, RunStats],
                                                                lake: Path) -> None:  # fmt: skip
    _, stats = together
    assert stats.experiments == len(SPECS) and stats.mode == "full"
    exposure_dirs = {p.parent for p in (lake / "assay.exposures").rglob("*.parquet") if "experiment=exp-" in str(p)}
    assert stats.partitions_read > len(exposure_dirs) and stats.rows_read > 0
    # ...and no more than the lake holds: every file at most once
    assert stats.files_read <= sum(1 for _ in lake.rglob("*.parquet"))


def test_the_experiments_differ(together: tuple[Path, RunStats]) -> None:
    """The equality above is not vacuous: timelines, metrics and variant orders differ."""
    results, _ = together
    documents = {spec.key: published(results, spec.key) for spec in SPECS}
    assert len({d["first_exposure_date"] for d in documents.values()}) == len(SPECS)  # incl. None
    assert [m["name"] for m in documents["exp-b"]["metrics"]] == ["latency_ms", "error_rate"]
    assert documents["exp-b"]["missing_metrics"] == ["not_in_catalog"]
    assert list(documents["exp-c"]["variants"]) == ["treatment", "control"]
    assert documents["never-started"]["daily"] == [] and documents["never-started"]["data_quality"]["exposures"] == 0
    assert len(documents["exp-a"]["slices"]) > len(documents["exp-c"]["slices"]) > 0
    assert "slices" not in documents["exp-b"] and "dimensions" not in documents["exp-b"]
    [p90] = [m for m in documents["exp-c"]["metrics"] if m["name"] == "latency_p90"]
    assert all(v["quantile"]["n_events"] > 0 for v in p90["variants"])
    first_days = [datetime.fromisoformat(documents[key]["first_exposure_date"]) for key in STARTS]
    assert max(first_days) - min(first_days) >= timedelta(days=5)


def test_the_lake_holds_copies_that_disagree(lake: Path) -> None:
    """The pass's per-experiment path for events whose copies disagree is exercised above."""
    table = pq.read_table(lake / "assay.events", columns=["event_id", "name", "unit_id", "timestamp"])
    contents: dict[str, set[tuple[Any, ...]]] = {}
    for row in table.to_pylist():
        contents.setdefault(row["event_id"], set()).add((row["name"], row["unit_id"], row["timestamp"]))
    assert sum(len(found) > 1 for found in contents.values()) >= 30
