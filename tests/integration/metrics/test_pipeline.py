"""Generator -> Kafka topics -> ingest (a real process) -> lake -> Spark job, then a late wave.

Phase 1 produces every record received by `first_as_of` and runs the job at that instant;
phase 2 produces the records that arrive later (late events, some for days that are
already frozen) and runs the job at `final_as_of`. Both runs must equal the plain-Python
reference exactly (slices by exposure attributes and a quantile metric included), frozen days
must not move, and the late events must reach the latest results and the provisional days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyspark.sql import SparkSession

from services.common.catalog import Catalog, MetricDefinition, load_catalog
from services.metrics import lake
from services.metrics.job.run import ExperimentSpec, JobOptions, run_experiment
from services.metrics.job.timeline import HOUR_US, parse_instant
from services.metrics.settings import DEFAULT_CATALOG
from tests.generator import Generated, generate, rfc3339
from tests.support.ingest import IngestProcess, create_topics, produce, wait_for_lake
from tests.support.kafka import running_broker
from tests.unit.metrics.helpers import with_attributes
from tests.unit.metrics.reference import reference_results
from tests.unit.metrics.test_job_reference import assert_statistics_equal

VARIANTS = ("control", "treatment")
# The shipped catalog has page_load_p90 (no window); this one also exercises a window.
P90_3D = MetricDefinition(name="page_load_p90_3d", type="quantile", quantile=0.9, event="page_load", value="value",
                          window_hours=72, owner="test")  # fmt: skip
CATALOG = Catalog(metrics=[*load_catalog(DEFAULT_CATALOG).metrics, P90_3D])
DIMENSIONS = ("country", "device")
MALFORMED = [b"{not json", b'{"event_id": "x", "name": "purchase"}', b"[]"]


@dataclass
class Scenario:
    data: Generated
    first: dict[str, Any]
    final: dict[str, Any]
    first_reference: dict[str, Any]
    final_reference: dict[str, Any]
    late_records: list[dict[str, Any]]
    data_dir: Path
    ingest_exit_code: int
    ingest_log: str
    health: dict[str, Any]
    prometheus: str


def ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["event_id"] for r in records}


def run_and_check(
    spark: SparkSession,
    data_dir: Path,
    data: Generated,
    until: datetime,
    exposures: list[dict[str, Any]],
    events: list[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job's document and the reference's, both at `until`."""
    as_of = rfc3339(until)
    spec = ExperimentSpec(data.truth.experiment, VARIANTS, dimensions=DIMENSIONS)
    options = JobOptions(parse_instant(as_of), 72 * HOUR_US, HOUR_US)
    published = run_experiment(spark, data_dir / "lake", data_dir / "results", spec, CATALOG, options)
    document = json.loads(published.to_json())  # the published bytes, as a reader sees them
    reference = reference_results(
        exposures, events, experiment=data.truth.experiment, metrics=CATALOG.metrics, variants=VARIANTS,
        as_of=as_of, dimensions=DIMENSIONS,
    )  # fmt: skip
    return document, reference


@pytest.fixture(scope="module")
def scenario(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    generated = generate(seed=11, units=700)
    data = Generated(generated.truth, with_attributes(generated.exposures, seed=11), generated.events)
    truth = data.truth
    data_dir = tmp_path_factory.mktemp("assay")
    early_exposures, early_events = data.received_between(None, truth.first_as_of)
    late_exposures, late_events = data.received_between(truth.first_as_of, truth.final_as_of)
    # Ingest counts every record on the topics (the health and quarantine tests check the totals),
    # so the scenario has a broker of its own that nothing else writes to.
    with running_broker(tmp_path_factory.mktemp("pipeline-tansu") / "tansu.log") as broker:
        create_topics(broker.bootstrap)
        produce(broker.bootstrap, lake.EXPOSURES_TOPIC, early_exposures)
        produce(broker.bootstrap, lake.EVENTS_TOPIC, early_events, raw=MALFORMED)
        ingest = IngestProcess(broker.bootstrap, data_dir, "pipeline-test",
                               {"ASSAY_INGEST_BATCH_MAX_SECONDS": "0.5"}).start()  # fmt: skip
        try:
            wait_for_lake(data_dir / "lake", {lake.EXPOSURES_TOPIC: ids(early_exposures),
                                              lake.EVENTS_TOPIC: ids(early_events)}, ingest)  # fmt: skip
            first, first_reference = run_and_check(
                spark, data_dir, data, truth.first_as_of, early_exposures, early_events
            )
            produce(broker.bootstrap, lake.EXPOSURES_TOPIC, late_exposures)
            produce(broker.bootstrap, lake.EVENTS_TOPIC, late_events)
            wait_for_lake(data_dir / "lake", {lake.EXPOSURES_TOPIC: ids(data.exposures),
                                              lake.EVENTS_TOPIC: ids(data.events)}, ingest)  # fmt: skip
            health = httpx.get(f"{ingest.base_url}/healthz", timeout=5).json()
            prometheus = httpx.get(f"{ingest.base_url}/metrics", timeout=5).text
        finally:
            exit_code = ingest.stop()
    final, final_reference = run_and_check(spark, data_dir, data, truth.final_as_of, data.exposures, data.events)
    return Scenario(data, first, final, first_reference, final_reference, late_events, data_dir, exit_code,
                    ingest.log(), health, prometheus)  # fmt: skip


def assert_slices_equal(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [(s["dimension"], s["value"], s["variants"]) for s in got] == [
        (s["dimension"], s["value"], s["variants"]) for s in want
    ]
    for mine, theirs in zip(got, want, strict=True):
        assert_statistics_equal(mine["metrics"], theirs["metrics"])


def test_first_run_equals_the_reference(scenario: Scenario) -> None:
    assert scenario.first["data_quality"] == scenario.first_reference["data_quality"]
    assert scenario.first["variants"] == scenario.first_reference["variants"]
    assert_statistics_equal(scenario.first["metrics"], scenario.first_reference["metrics"])
    assert_slices_equal(scenario.first["slices"], scenario.first_reference["slices"])
    assert len(scenario.first["slices"]) > len(DIMENSIONS) * 3  # attributes came through Kafka and ingest
    for got, want in zip(scenario.first["daily"], scenario.first_reference["daily"], strict=True):
        assert (got["date"], got["final"], got["variants"]) == (want["date"], want["final"], want["variants"])
        assert_statistics_equal(got["metrics"], want["metrics"])


def test_run_after_the_late_wave_equals_the_reference(scenario: Scenario) -> None:
    assert scenario.final["data_quality"] == scenario.final_reference["data_quality"]
    assert_statistics_equal(scenario.final["metrics"], scenario.final_reference["metrics"])
    assert_slices_equal(scenario.final["slices"], scenario.final_reference["slices"])
    for got, want in zip(scenario.final["daily"], scenario.final_reference["daily"], strict=True):
        assert (got["date"], got["final"], got["variants"]) == (want["date"], want["final"], want["variants"])
        assert_statistics_equal(got["metrics"], want["metrics"])


def test_frozen_days_do_not_move_and_late_events_reach_the_latest(scenario: Scenario) -> None:
    first_days = {d["date"]: d for d in scenario.first["daily"]}
    frozen_then = [d for d in first_days.values() if d["final"]]
    assert len(frozen_then) >= 5
    later = {d["date"]: d for d in scenario.final["daily"]}
    for day in frozen_then:
        assert later[day["date"]] == day, day["date"]  # byte-for-byte the same snapshot
    # Some late events belong to days that were frozen before they arrived...
    frozen_dates = set(first_days) & {d["date"] for d in frozen_then}
    assert sum(1 for r in scenario.late_records if r["timestamp"][:10] in frozen_dates) > 0
    before, after = scenario.first["data_quality"], scenario.final["data_quality"]
    assert after["late_after_freeze"] > before["late_after_freeze"]
    assert after["late_events_included"] > before["late_events_included"]
    # ...and the latest results and the provisional days include them.
    assert scenario.final["metrics"] != scenario.first["metrics"]
    provisional_then = [d for d in first_days.values() if not d["final"]]
    assert any(later[d["date"]]["metrics"] != d["metrics"] for d in provisional_then)
    assert not scenario.final["daily"][-1]["final"]
    # the last day is the latest, bar the quantile metric (latest only)
    assert scenario.final["daily"][-1]["metrics"] == [m for m in scenario.final["metrics"] if m["type"] != "quantile"]


def test_quarantine_logs_and_graceful_shutdown(scenario: Scenario) -> None:
    assert scenario.ingest_exit_code == 0
    [quarantine] = (scenario.data_dir / "lake" / lake.QUARANTINE_DIR).glob("assay.events-*.jsonl")
    reasons = [json.loads(line)["reason"] for line in quarantine.read_text().splitlines()]
    assert len(reasons) == 3 and any("not JSON" in reason for reason in reasons)
    flushes = [json.loads(line) for line in scenario.ingest_log.splitlines() if '"ingest flush"' in line]
    assert flushes and flushes[-1]["totals"]["quarantined"] == 3
    stopped = [json.loads(line) for line in scenario.ingest_log.splitlines() if '"ingest stopped"' in line]
    totals = stopped[-1]["totals"]
    assert totals["events"] == len(scenario.data.events) and totals["exposures"] == len(scenario.data.exposures)


def test_health_surface_reports_the_counts(scenario: Scenario) -> None:
    assert scenario.health["status"] == "ok"
    counters = scenario.health["counters"]
    assert counters["events"] == len(scenario.data.events) and counters["quarantined"] == 3
    assert scenario.health["last_flush_at"] is not None
    line = f'assay_ingest_messages_total{{outcome="event"}} {float(len(scenario.data.events))}'
    assert line in scenario.prometheus
