"""The Spark metrics job SIGKILLed in the middle of a run: the results published before stay
byte for byte, no partial or temporary file is left where results are read, and a rerun
completes and publishes exactly what the plain-Python reference computes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from services.common.catalog import load_catalog
from services.metrics.settings import DEFAULT_CATALOG
from tests.generator import generate
from tests.support.eventually import eventually
from tests.unit.metrics.helpers import write_lake
from tests.unit.metrics.reference import reference_results
from tests.unit.metrics.test_job_reference import assert_statistics_equal

REPO = Path(__file__).resolve().parents[2]
VARIANTS = ("control", "treatment")
CATALOG = load_catalog(DEFAULT_CATALOG)
JOB_SETTINGS = {"ASSAY_ENV": "test", "ASSAY_LOG_LEVEL": "INFO", "ASSAY_SPARK_MASTER": "local[2]",
                "ASSAY_SPARK_DRIVER_MEMORY": "1g", "ASSAY_SPARK_SHUFFLE_PARTITIONS": "2",
                "ASSAY_REDIS_URL": "redis://127.0.0.1:1/0"}  # fmt: skip  # no registry: the flags define the run


@dataclass
class JobProcess:
    """`python -m services.metrics run ...` in a session of its own, so a kill takes the
    driver and its Spark JVM together, as when a machine or container dies."""

    data_dir: Path
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> JobProcess:
        env = {**os.environ, **JOB_SETTINGS, "ASSAY_DATA_DIR": str(self.data_dir)}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.metrics", "run", *self.argv], env=env, cwd=REPO,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, occurrence: int = 1, timeout: float = 240) -> None:
        def logged() -> bool:
            if self.log().count(text) >= occurrence:
                return True
            assert self.process is not None and self.process.poll() is None, self.log()[-3000:]
            return False

        eventually(logged, timeout, message=lambda: f"no {text!r} in the job's log:\n{self.log()[-3000:]}")

    def kill(self) -> int:
        """SIGKILL to the job's whole process group (its own session); the driver's exit code."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait(timeout=30)

    def wait(self, timeout: float = 280) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Callable[[list[str], str], JobProcess]]:
    """Start jobs over `tmp_path/assay`; any still running at the end is killed with its Spark JVM."""
    started: list[JobProcess] = []

    def start(argv: list[str], name: str) -> JobProcess:
        job = JobProcess(tmp_path / "assay", argv, tmp_path / f"{name}.log").start()
        started.append(job)
        return job

    yield start
    for job in started:
        if job.process is not None and job.process.poll() is None:
            job.kill()


def files_under(directory: Path) -> dict[str, bytes]:
    """Every file (temporaries included) by relative path, with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_job_killed_mid_run_keeps_the_published_results(
    tmp_path: Path, jobs: Callable[[list[str], str], JobProcess]
) -> None:
    data = generate(seed=21, units=200)
    truth = data.truth
    halfway = truth.start + timedelta(days=truth.days / 2)
    early_exposures, early_events = data.received_between(None, halfway)
    late_exposures, late_events = data.received_between(halfway, truth.final_as_of)
    assert len(early_exposures) + len(late_exposures) == len(data.exposures)
    assert len(early_events) + len(late_events) == len(data.events)
    data_dir = tmp_path / "assay"
    lake_dir, results = data_dir / "lake", data_dir / "results" / truth.experiment
    written = write_lake(lake_dir, early_exposures, early_events)
    assert written == len(early_exposures) + len(early_events)
    args = ["--experiment", truth.experiment, "--variants", ",".join(VARIANTS)]

    # The scheduled job, as `make up` runs it: one Spark session, a round every second. The
    # first round publishes the results a reader sees; the second, which would change them
    # (the late wave has landed by then), is killed as soon as it starts computing.
    scheduled = jobs([*args, "--every", "1"], "scheduled-job")
    scheduled.wait_for_log('"msg": "results published"')
    before = files_under(results)
    baseline = json.loads(before["latest.json"])
    assert sorted(before) == ["history/" + baseline["computed_at"] + ".json", "latest.json"]
    assert baseline["data_quality"] == reference_results(
        early_exposures, early_events, experiment=truth.experiment, metrics=CATALOG.metrics, variants=VARIANTS,
        as_of=baseline["as_of"],
    )["data_quality"]  # fmt: skip
    write_lake(lake_dir, late_exposures, late_events, first_offset=written)
    scheduled.wait_for_log('"msg": "computing results"', occurrence=2)
    assert scheduled.kill() == -signal.SIGKILL, "the job ended before it could be killed mid-run"
    assert scheduled.log().count('"msg": "results published"') == 1, "the killed round published"
    [finished] = [json.loads(line) for line in scheduled.log().splitlines() if '"msg": "metrics run finished"' in line]
    assert (finished["experiments"], finished["mode"], finished["failures"]) == (1, "full", 0)
    assert 0 < finished["rows_read"] <= written and finished["partitions_read"] > 0 and finished["seconds"] > 0
    status = json.loads((data_dir / "metrics-scheduler.json").read_text())
    assert status["last_run"] == {key: finished[key] for key in status["last_run"]}
    assert files_under(results) == before, "the killed run changed or left files among the results"
    assert set(files_under(data_dir / "results")) == {f"{truth.experiment}/{name}" for name in before}

    rerun = jobs(args, "rerun-job")
    assert rerun.wait() == 0, rerun.log()[-3000:]
    after = files_under(results)
    document = json.loads(after["latest.json"])
    new_history = f"history/{document['computed_at']}.json"
    assert sorted(after) == sorted([*before, new_history]) and after["latest.json"] == after[new_history]
    assert {name: after[name] for name in before if name != "latest.json"} == {
        name: content for name, content in before.items() if name != "latest.json"
    }  # history is only added to

    reference = reference_results(
        data.exposures, data.events, experiment=truth.experiment, metrics=CATALOG.metrics, variants=VARIANTS,
        as_of=document["as_of"],
    )  # fmt: skip
    quality, expected = document["data_quality"], reference["data_quality"]
    print(f"\njob killed mid-run: {written} lake rows for the published run, "
          f"{len(late_exposures) + len(late_events)} more for the killed one; published before "
          f"{baseline['data_quality']['exposures']} exposures, after the rerun {quality['exposures']} exposures / "
          f"{quality['units']} units / {quality['duplicate_events']} duplicates (reference "
          f"{expected['exposures']} / {expected['units']} / {expected['duplicate_events']})")  # fmt: skip
    assert quality == expected and quality["exposures"] > baseline["data_quality"]["exposures"]
    assert document["variants"] == reference["variants"]
    assert_statistics_equal(document["metrics"], reference["metrics"])
