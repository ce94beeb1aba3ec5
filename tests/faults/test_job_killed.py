"""The Spark metrics job SIGKILLed in the middle of a run: the results published before stay
byte for byte, no partial or temporary file is left where results are read, and a rerun
completes and publishes exactly what the plain-Python reference computes.

With the state kept for incremental reruns (issue 13): reruns killed while computing, the
moment their document is published and the moment they stage their state each leave results
and state that a reader and the next run can use, and the next run recovers incrementally,
publishing what a from-scratch full run publishes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from services.common.catalog import load_catalog
from services.common.results import ResultsDocument
from services.metrics.job.runlock import lock_path, run_lock
from services.metrics.job.state import STAGING_PREFIX, LoadedState, StateStore
from services.metrics.job.timeline import parse_instant
from services.metrics.settings import DEFAULT_CATALOG
from tests.generator import Generated, Record, generate
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

    def kill_when(self, reached: Callable[[JobProcess], bool], timeout: float = 300) -> int:
        """SIGKILL within about a millisecond of `reached(self)` turning true (a file appearing);
        the driver's exit code. Fails if the job ends first."""

        def now() -> bool:
            if reached(self):
                return True
            assert self.process is not None and self.process.poll() is None, self.log()[-3000:]
            return False

        eventually(now, timeout, interval=0.001, message=lambda: f"the job never got there:\n{self.log()[-3000:]}")
        return self.kill()

    def finished(self) -> dict[str, Any]:
        """The run's "metrics run finished" log line (the logs are JSON, one object a line)."""
        lines = [entry for entry in map(_json_object, self.log().splitlines())
                 if entry.get("msg") == "metrics run finished"]  # fmt: skip
        assert len(lines) == 1, self.log()[-3000:]
        return lines[0]

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


def _json_object(line: str) -> dict[str, Any]:
    """A JSON log line as a dict; anything else the process printed (the JVM's own lines) as {}."""
    with contextlib.suppress(ValueError):
        value = json.loads(line)
        if isinstance(value, dict):
            return value
    return {}


class StartJob(Protocol):
    def __call__(self, argv: list[str], name: str, data_dir: Path | None = None) -> JobProcess: ...


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[StartJob]:
    """Start jobs over `tmp_path/assay` (or another data directory); any still running at the
    end is killed with its Spark JVM."""
    started: list[JobProcess] = []

    def start(argv: list[str], name: str, data_dir: Path | None = None) -> JobProcess:
        job = JobProcess(data_dir or tmp_path / "assay", argv, tmp_path / f"{name}.log").start()
        started.append(job)
        return job

    yield start
    for job in started:
        if job.process is not None and job.process.poll() is None:
            job.kill()


def files_under(directory: Path) -> dict[str, bytes]:
    """Every file (temporaries included) by relative path, with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def two_waves(seed: int) -> tuple[Generated, tuple[list[Record], list[Record]], tuple[list[Record], list[Record]]]:
    """Generated data and its (exposures, events) received before and after the midpoint."""
    data = generate(seed=seed, units=200)
    halfway = data.truth.start + timedelta(days=data.truth.days / 2)
    early, late = data.received_between(None, halfway), data.received_between(halfway, data.truth.final_as_of)
    assert len(early[0]) + len(late[0]) == len(data.exposures) and len(early[1]) + len(late[1]) == len(data.events)
    return data, early, late


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_job_killed_mid_run_keeps_the_published_results(tmp_path: Path, jobs: StartJob) -> None:
    data, (early_exposures, early_events), (late_exposures, late_events) = two_waves(21)
    truth = data.truth
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


# Quantile metrics are recomputed in full by design (see services/metrics/job/incremental.py).
ADDITIVE_METRICS = tuple(metric.name for metric in CATALOG.metrics if metric.type != "quantile")


def published(results: Path) -> dict[str, bytes]:
    """What a reader of the results can see (no temporary file: their names start with '.'),
    each file checked to be a whole results document."""
    files = {name: content for name, content in files_under(results).items() if not Path(name).name.startswith(".")}
    for name, content in files.items():
        assert ResultsDocument.from_json(content).as_of, name
    return files


def comparable(document: bytes) -> dict[str, Any]:
    """A document without the moment it was computed at."""
    data = json.loads(document)
    data.pop("computed_at")
    return data


def usable_state(store: StateStore) -> LoadedState:
    state = store.load()
    assert isinstance(state, LoadedState), state
    return state


def staging_dirs(store: StateStore) -> set[str]:
    return {path.name for path in store.root.glob(f"{STAGING_PREFIX}*")}


KILL_POINTS = ("computing", "published", "staging")


def rerun_reached(point: str, store: StateStore, results: Path) -> Callable[[JobProcess], bool]:
    """Whether a rerun started after this call got to `point`: its "computing results" log
    line, a latest.json replacing the one there now (a new inode: documents are written to a
    temporary file and renamed), or a staging directory appearing in the state directory
    (a leftover of an earlier killed run is not this one's)."""
    if point == "computing":
        return lambda job: '"msg": "computing results"' in job.log()
    if point == "published":
        inode = (results / "latest.json").stat().st_ino
        return lambda _job: (results / "latest.json").stat().st_ino != inode
    staged = staging_dirs(store)
    return lambda _job: bool(staging_dirs(store) - staged)


@dataclass(frozen=True)
class Killed:
    """What a killed rerun left behind."""

    point: str
    published: dict[str, bytes]  # what a reader of the results sees afterwards
    new_document: bool  # its document replaced latest.json
    committed: bool  # its state became the current one
    staging_left: int

    def __str__(self) -> str:
        return (f"{self.point}: latest.json {'new' if self.new_document else 'kept'}, state "
                f"{'committed' if self.committed else 'kept'}, {self.staging_left} staging dir(s) left")  # fmt: skip


def kill_rerun(jobs: StartJob, args: list[str], point: str, store: StateStore, results: Path,
               before: dict[str, bytes]) -> Killed:  # fmt: skip
    """Start a rerun, SIGKILL it at `point` and check what it leaves: the state loads (what
    was kept before, or what the rerun itself committed for the same request), every
    published file is a whole document, history is only added to, and no state is committed
    ahead of its results."""
    previous = usable_state(store)
    reached = rerun_reached(point, store, results)
    assert jobs(args, f"killed-{point}-job").kill_when(reached) == -signal.SIGKILL
    state = usable_state(store)
    assert (state.meta.as_of_us, state.meta.experiments) == (previous.meta.as_of_us, previous.meta.experiments)
    now = published(results)
    history = {name: content for name, content in before.items() if name != "latest.json"}
    assert {name: now.get(name) for name in history} == history, "a killed run changed a published document"
    killed = Killed(point, now, now["latest.json"] != before["latest.json"],
                    state.meta.run_id != previous.meta.run_id, len(staging_dirs(store)))  # fmt: skip
    assert killed.new_document or not killed.committed, "a killed run committed its state before publishing"
    return killed


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_reruns_killed_at_any_point_leave_results_and_state_usable(tmp_path: Path, jobs: StartJob) -> None:
    data, (early_exposures, early_events), (late_exposures, late_events) = two_waves(22)
    truth = data.truth
    first_day = min(r["timestamp"][:10] for r in data.exposures if r["experiment"] == truth.experiment)
    assert first_day == min(r["timestamp"][:10] for r in early_exposures if r["experiment"] == truth.experiment), (
        "the late wave moves the experiment's day 0, which rightly makes the rerun a full one"
    )
    args = ["--experiment", truth.experiment, "--variants", ",".join(VARIANTS),
            "--metrics", ",".join(ADDITIVE_METRICS), "--as-of", truth.final_as_of.isoformat()]  # fmt: skip

    # The reference: the whole lake computed from scratch in a data directory of its own,
    # running alongside the rest (it only has to be done by the end).
    scratch_dir = tmp_path / "from-scratch"
    scratch_rows = write_lake(scratch_dir / "lake", early_exposures, early_events)
    write_lake(scratch_dir / "lake", late_exposures, late_events, first_offset=scratch_rows)
    from_scratch = jobs([*args, "--full"], "from-scratch-job", scratch_dir)

    # (1) A first run over the early wave publishes and commits its state.
    data_dir = tmp_path / "assay"
    lake_dir, results = data_dir / "lake", data_dir / "results" / truth.experiment
    store = StateStore(data_dir / "state")
    written = write_lake(lake_dir, early_exposures, early_events)
    first = jobs(args, "first-job")
    assert first.wait() == 0, first.log()[-3000:]
    assert (first.finished()["mode"], first.finished()["full_reasons"]) == ("full", {truth.experiment: "no state yet"})
    kept = usable_state(store)
    assert truth.experiment in kept.meta.experiments and not staging_dirs(store)
    before = first_published = published(results)

    # (2) The late wave lands in new lake files; (3) three reruns are killed, each later than
    # the one before: as it starts computing, as its document replaces latest.json (before
    # the state commit that follows), and as it stages the state it is about to commit.
    write_lake(lake_dir, late_exposures, late_events, first_offset=written)
    killed: list[Killed] = []
    for point in KILL_POINTS:
        killed.append(kill_rerun(jobs, args, point, store, results, before))
        before = killed[-1].published
    assert killed[0].published == first_published and not killed[0].committed, "killed while computing, it published"
    killed_documents = [entry.published["latest.json"] for entry in killed if entry.new_document]
    assert killed_documents, "no killed run got as far as publishing"

    # (4) The next run recovers incrementally and publishes what the full run from scratch does.
    final = jobs(args, "final-job")
    assert final.wait() == 0, final.log()[-3000:]
    finished = final.finished()
    assert (finished["mode"], finished["incremental_experiments"], finished["full_reasons"]) == ("incremental", 1, {})
    assert finished["failures"] == 0 and len(usable_state(store).manifest) == finished["files_read"]
    assert not staging_dirs(store), "the killed runs' staging directories were not cleaned up"
    assert from_scratch.wait() == 0, from_scratch.log()[-3000:]
    assert from_scratch.finished()["full_reasons"] == {truth.experiment: "forced (run --full)"}
    expected = comparable((scratch_dir / "results" / truth.experiment / "latest.json").read_bytes())
    document = published(results)["latest.json"]
    print(f"\nreruns killed with state kept: {'; '.join(map(str, killed))}; then an incremental run reading "
          f"{finished['files_read']} files in {finished['seconds']}s "
          f"(from scratch: {from_scratch.finished()['seconds']}s)")  # fmt: skip
    assert comparable(document) == expected != comparable(first_published["latest.json"])
    assert all(comparable(killed) == expected for killed in killed_documents), "a killed run published other numbers"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_run_waits_for_the_one_holding_the_data_directory(tmp_path: Path, jobs: StartJob) -> None:
    """Two runs over one data directory (the scheduler and a run by hand) never overlap: the
    second waits for the run lock before it fixes its as-of or reads the lake, so it counts
    what landed while it waited, and no earlier reading of the lake can replace its document."""
    data, (early_exposures, early_events), (late_exposures, late_events) = two_waves(23)
    truth = data.truth
    data_dir = tmp_path / "assay"
    lake_dir, results = data_dir / "lake", data_dir / "results" / truth.experiment
    written = write_lake(lake_dir, early_exposures, early_events)
    args = ["--experiment", truth.experiment, "--variants", ",".join(VARIANTS)]
    with run_lock(lock_path(data_dir / "state"), timeout=5) as waited:  # another run at work
        assert waited < 1
        waiting = jobs(args, "waiting-job")
        waiting.wait_for_log('"msg": "waiting for another metrics run to finish"')
        assert f"pid {os.getpid()}" in waiting.log(), "the waiting run does not name the holder"
        write_lake(lake_dir, late_exposures, late_events, first_offset=written)  # lands meanwhile
        assert '"msg": "computing results"' not in waiting.log() and not results.exists()
        released_us = time.time_ns() // 1000
    assert waiting.wait() == 0, waiting.log()[-3000:]
    assert '"msg": "another metrics run finished; this one starts"' in waiting.log()
    document = json.loads((results / "latest.json").read_bytes())
    assert parse_instant(document["as_of"]) >= released_us - 1_000_000, "the as-of was fixed while waiting"
    reference = reference_results(
        data.exposures, data.events, experiment=truth.experiment, metrics=CATALOG.metrics, variants=VARIANTS,
        as_of=document["as_of"],
    )  # fmt: skip
    assert document["data_quality"] == reference["data_quality"], "the run did not count what landed while it waited"
    assert_statistics_equal(document["metrics"], reference["metrics"])
