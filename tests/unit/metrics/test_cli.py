"""Command line and registry reading (one test runs a round on the shared Spark session)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import redis
from pyspark.sql import SparkSession

from deploy.embedded import RedisServer
from services.common.registry.keys import EXPERIMENTS
from services.metrics.__main__ import parse_args
from services.metrics.job.cli import experiment_keys, experiment_specs, run_command
from services.metrics.job.registry import running_experiments, running_specs, spec_from_document
from services.metrics.job.run import ExperimentSpec
from services.metrics.settings import MetricsSettings


def document(key: str, status: str, metrics: dict[str, list[str]] | None = None) -> str:
    """A registry document as the assignment service stores it (`ExperimentPublic`)."""
    return json.dumps({
        "key": key, "name": key, "status": status, "salt": key, "traffic": 1.0, "version": 1,
        "created_at": "2026-11-20T10:00:00.000Z", "updated_at": "2026-11-20T10:00:00.000Z",
        "variants": [{"key": "holdout", "weight": 0.5}, {"key": "new", "weight": 0.5}],
        "metrics": metrics or {"primary": [], "secondary": [], "guardrails": []},
    })  # fmt: skip


def test_ingest_is_the_default_command() -> None:
    assert parse_args([]).command == "ingest"
    args = parse_args(["run", "--experiments", "a,b", "--as-of", "2026-11-20T00:00:00Z"])
    assert (args.command, args.experiments, args.as_of, args.every) == (
        "run",
        "a,b",
        "2026-11-20T00:00:00Z",
        None,
    )


def test_run_needs_exactly_one_way_to_name_experiments() -> None:
    with pytest.raises(SystemExit):
        parse_args(["run"])
    with pytest.raises(SystemExit):
        parse_args(["run", "--experiment", "a", "--all-running"])


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--experiment", "../../etc"],
        ["run", "--experiments", "ok,Not Valid"],
        ["run", "--experiment", "a", "--every", "60", "--as-of", "2026-11-20T00:00:00Z"],
        ["run", "--experiment", "a", "--every", "0"],
    ],
)
def test_bad_arguments_exit_2_before_spark_starts(argv: list[str], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    with caplog.at_level(logging.ERROR):
        assert run_command(parse_args(argv), MetricsSettings(env="test", data_dir=tmp_path)) == 2
    assert caplog.records and not (tmp_path / "results").exists()


def test_experiment_keys_are_checked() -> None:
    with pytest.raises(ValueError, match="not an experiment key"):
        ExperimentSpec("../escape")
    with pytest.raises(ValueError, match="dimensions must be distinct"):
        ExperimentSpec("exp-a", dimensions=("country", "country"))


def test_spec_from_a_registry_document() -> None:
    spec = spec_from_document(document("exp-a", "running", {"primary": ["conversion"], "guardrails": ["latency_ms"]}))
    assert spec == ExperimentSpec("exp-a", ("holdout", "new"), ("conversion", "latency_ms"))
    assert spec_from_document(document("exp-b", "running")).metrics is None  # none named: all metrics
    assert spec.dimensions == ()
    sliced = json.loads(document("exp-c", "running"))
    sliced["dimensions"] = ["country", "device"]
    assert spec_from_document(json.dumps(sliced)).dimensions == ("country", "device")


def test_only_running_and_readable_documents_are_computed() -> None:
    specs = running_specs({
        "on": document("on", "running"), "off": document("off", "paused"), "bad": "{not json", "odd": "[]",
    })  # fmt: skip
    assert [spec.key for spec in specs] == ["on"]


def test_running_experiments_come_from_redis(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()  # our own: never touch the shared registry
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        client.hset(EXPERIMENTS, mapping={"exp-on": document("exp-on", "running"),
                                          "exp-off": document("exp-off", "stopped")})  # fmt: skip
        client.close()
        assert running_experiments(server.url) == [ExperimentSpec("exp-on", ("holdout", "new"))]
    finally:
        server.stop()


def test_named_experiments_take_the_registry_definition_and_flags_override_it(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        sliced = json.loads(document("exp-a", "paused", {"primary": ["conversion"]}))
        sliced["dimensions"] = ["country"]
        client = redis.Redis.from_url(server.url, decode_responses=True)
        client.hset(EXPERIMENTS, mapping={"exp-a": json.dumps(sliced)})
        client.close()
        settings = MetricsSettings(env="test", data_dir=tmp_path, redis_url=server.url)
        named = experiment_specs(parse_args(["run", "--experiments", "exp-a,exp-unknown"]), settings)
        assert named == [ExperimentSpec("exp-a", ("holdout", "new"), ("conversion",), ("country",)),
                         ExperimentSpec("exp-unknown")]  # fmt: skip
        flags = ["run", "--experiment", "exp-a", "--dimensions", "platform,country", "--metrics", "revenue",
                 "--variants", "new,holdout"]  # fmt: skip
        overridden = experiment_specs(parse_args(flags), settings)
        assert overridden == [ExperimentSpec("exp-a", ("new", "holdout"), ("revenue",), ("platform", "country"))]
    finally:
        server.stop()
    # No registry: the flags are all there is.
    alone = experiment_specs(parse_args(["run", "--experiment", "exp-a"]), settings)
    assert alone == [ExperimentSpec("exp-a")]


def test_a_run_asks_the_registry_once(spark: SparkSession, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """Checking the keys before Spark starts does not ask the registry: with none reachable,
    a run says so once (the round's own question), not twice."""
    settings = MetricsSettings(env="test", data_dir=tmp_path, redis_url="redis://127.0.0.1:1/0")
    args = parse_args(["run", "--experiment", "exp-a", "--as-of", "2026-11-20T00:00:00Z"])
    assert experiment_keys(args) == ("exp-a",)
    with caplog.at_level(logging.INFO, logger="services.metrics.job"):
        assert run_command(args, settings, spark) == 0
    assert [r.getMessage() for r in caplog.records].count(
        "registry not reachable; computing with the command's flags only"
    ) == 1
