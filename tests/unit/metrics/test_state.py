"""The job's state store (services/metrics/job/state.py): commit is atomic, anything doubtful
about the state means a full recompute with a reason, and a run killed at any step leaves the
previous version usable."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from services.metrics.job.state import (
    CURRENT,
    META,
    STATE_VERSION,
    ExperimentState,
    FileStamp,
    LoadedState,
    RunRequest,
    StateMeta,
    StateStore,
    Unusable,
    day0_moved,
    manifest_diff,
    plan_run,
    stamp_files,
)

CONVERSION = {"conversion": "a1b2c3d4e5f60718"}
EXPERIMENT = ExperimentState(metrics=CONVERSION, dimensions=("country",), day0_us=1_000)


def meta(run_id: str = "r1", **changes: object) -> StateMeta:
    fields: dict[str, object] = {
        "state_version": STATE_VERSION, "run_id": run_id, "as_of_us": 10,
        "lateness_us": 72, "late_threshold_us": 1, "experiments": {"k": EXPERIMENT},
    }  # fmt: skip
    return StateMeta.model_validate({**fields, **changes})


def request(**changes: object) -> RunRequest:
    fields: dict[str, object] = {"as_of_us": 20, "lateness_us": 72, "late_threshold_us": 1,
                                 "experiments": {"k": EXPERIMENT}}  # fmt: skip
    return RunRequest(**{**fields, **changes})  # type: ignore[arg-type]


def committed(tmp_path: Path, run_id: str = "r1", manifest: dict[str, FileStamp] | None = None) -> StateStore:
    store = StateStore(tmp_path / "state")
    staging = store.stage(run_id)
    (staging / "units").mkdir()
    (staging / "units" / "part-0.parquet").write_bytes(b"rows of " + run_id.encode())
    store.commit(staging, meta(run_id), manifest or {"a.parquet": FileStamp(3, 7)})
    return store


def test_a_committed_version_loads_back(tmp_path: Path) -> None:
    store = committed(tmp_path)
    loaded = store.load()
    assert isinstance(loaded, LoadedState)
    assert loaded.meta == meta("r1") and loaded.manifest == {"a.parquet": FileStamp(3, 7)}
    assert (loaded.directory / "units" / "part-0.parquet").read_bytes() == b"rows of r1"
    assert (store.root / CURRENT).read_text() == "v-r1\n"


def test_no_state_is_a_reason_not_an_error(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "absent").load() == Unusable("no state yet")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: (d / META).write_text("{not json"), "corrupt"),
        (lambda d: (d / META).write_text(json.dumps({"state_version": 1})), "corrupt"),
        (lambda d: (d / META).unlink(), "incomplete: meta.json missing"),
        (lambda d: (d / "manifest.json").write_text('{"a.parquet": [1]}'), "corrupt"),
        (lambda d: (d / "manifest.json").unlink(), "incomplete: manifest.json missing"),
    ],
    ids=["meta-not-json", "meta-fields-missing", "meta-missing", "manifest-bad-entry", "manifest-missing"],
)
def test_damaged_state_is_unusable_with_the_reason(
    tmp_path: Path, damage: Callable[[Path], object], reason: str
) -> None:
    store = committed(tmp_path)
    damage(store.root / "v-r1")
    loaded = store.load()
    assert isinstance(loaded, Unusable) and reason in loaded.reason


@pytest.mark.parametrize("pointer", ["../../etc", "v-gone", "", "garbage"])
def test_a_bad_pointer_is_unusable(tmp_path: Path, pointer: str) -> None:
    store = committed(tmp_path)
    (store.root / CURRENT).write_text(pointer)
    assert isinstance(store.load(), Unusable)


def test_commit_keeps_the_current_and_the_previous_version(tmp_path: Path) -> None:
    store = committed(tmp_path, "r1")
    for run_id in ("r2", "r3"):
        staging = store.stage(run_id)
        store.commit(staging, meta(run_id), {})
    assert sorted(path.name for path in store.root.iterdir()) == [CURRENT, "v-r2", "v-r3"]
    loaded = store.load()
    assert isinstance(loaded, LoadedState) and loaded.meta.run_id == "r3"


def test_a_version_renamed_but_never_made_current_is_pruned_not_the_previous_one(tmp_path: Path) -> None:
    """A run killed between renaming its staging directory and switching CURRENT leaves a
    version no one committed; the next commit keeps the one it replaces, not that one."""
    store = committed(tmp_path, "one")
    (store.root / "v-orphan").mkdir()  # what the killed run left
    staging = store.stage("three")
    store.commit(staging, meta("three"), {})
    assert sorted(path.name for path in store.root.iterdir()) == [CURRENT, "v-one", "v-three"]


def test_an_uncommitted_staging_directory_is_ignored_and_then_removed(tmp_path: Path) -> None:
    store = committed(tmp_path, "r1")
    staging = store.stage("r2")
    (staging / "half-written.parquet").write_bytes(b"...")
    loaded = store.load()
    assert isinstance(loaded, LoadedState) and loaded.meta.run_id == "r1"
    store.stage("r3")
    assert not staging.exists()


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from services.metrics.job import state as st

    store = st.StateStore(Path(sys.argv[1]))
    stop_at = sys.argv[2]
    real_write = st.write_bytes_atomic

    def write(final, data):
        if final.name == stop_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(final, data)

    st.write_bytes_atomic = write
    staging = store.stage("r2")
    (staging / "units").mkdir()
    (staging / "units" / "part-0.parquet").write_bytes(b"rows of r2")
    if stop_at == "rename":
        os.kill(os.getpid(), signal.SIGKILL)
    meta = st.StateMeta(state_version=st.STATE_VERSION, run_id="r2", as_of_us=20, lateness_us=72,
                        late_threshold_us=1, experiments={})
    store.commit(staging, meta, {})
""")


@pytest.mark.parametrize("stop_at", ["manifest.json", "meta.json", "rename", "CURRENT", "never"])
def test_sigkill_at_any_step_leaves_a_usable_version(tmp_path: Path, stop_at: str) -> None:
    store = committed(tmp_path, "r1")
    repository = Path(__file__).resolve().parents[3]
    command = [sys.executable, "-c", KILLED_RUN, str(store.root), stop_at]
    run = subprocess.run(command, cwd=repository, capture_output=True, text=True, timeout=60)
    loaded = store.load()
    assert isinstance(loaded, LoadedState), loaded
    if stop_at == "never":
        assert run.returncode == 0, run.stderr
        assert loaded.meta.run_id == "r2"
    else:
        assert run.returncode == -signal.SIGKILL, run.stderr
        assert loaded.meta.run_id == "r1"
        assert (loaded.directory / "units" / "part-0.parquet").read_bytes() == b"rows of r1"
    store.stage("r3")  # the next run cleans up after the killed one
    assert not list(store.root.glob(".staging-r2"))


def test_stamps_and_diff_tell_new_changed_and_vanished_files(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    (lake / "d").mkdir(parents=True)
    old, kept = lake / "d" / "old.parquet", lake / "d" / "kept.parquet"
    old.write_bytes(b"1")
    kept.write_bytes(b"22")
    before = stamp_files(lake, [old, kept, lake / "d" / "gone-before-stat.parquet"])
    assert set(before) == {"d/old.parquet", "d/kept.parquet"}
    old.write_bytes(b"111")
    new = lake / "d" / "new.parquet"
    new.write_bytes(b"3")
    after = stamp_files(lake, [old, new, kept])
    assert manifest_diff(before, after).added == ("d/new.parquet",)
    assert manifest_diff(before, after).changed == ("d/old.parquet",)
    assert manifest_diff(before, {"d/old.parquet": before["d/old.parquet"]}).vanished == ("d/kept.parquet",)
    assert not manifest_diff(before, {**before, "d/x.parquet": FileStamp(1, 1)}).rewritten


def loaded_state(**changes: object) -> LoadedState:
    return LoadedState(Path("/nowhere"), meta("r1", **changes), {"a": FileStamp(1, 1)})


@pytest.mark.parametrize(
    ("state", "req", "reason"),
    [
        (Unusable("no state yet"), request(), "no state yet"),
        (loaded_state(), request(force_full=True), "forced"),
        (loaded_state(state_version=STATE_VERSION + 1), request(), "state version"),
        (loaded_state(lateness_us=48), request(), "lateness"),
        (loaded_state(as_of_us=30), request(), "as-of is earlier"),
    ],
    ids=["no-state", "forced", "other-version", "lateness", "as-of-back"],
)
def test_what_forces_a_full_recompute(state: LoadedState | Unusable, req: RunRequest, reason: str) -> None:
    plan = plan_run(state, req, {"a": FileStamp(1, 1)})
    assert plan.mode == "full" and reason in plan.reasons["k"]


def test_a_rewritten_lake_file_forces_a_full_recompute() -> None:
    plan = plan_run(loaded_state(), request(), {"a": FileStamp(2, 1)})
    assert plan.mode == "full" and plan.reasons["k"] == "lake file changed since the state was kept: a"
    plan = plan_run(loaded_state(), request(), {})
    assert plan.reasons["k"] == "lake file vanished since the state was kept: a"


def test_per_experiment_changes_make_only_that_experiment_full() -> None:
    other = ExperimentState(metrics={"revenue": "0123456789abcdef"})
    changed_metric = ExperimentState(metrics={"conversion": "ffffffffffffffff"}, dimensions=("country",))
    experiments = {"k": EXPERIMENT, "new": other, "moved": changed_metric, "sliced": EXPERIMENT}
    state = LoadedState(Path("/nowhere"), meta(experiments={
        "k": EXPERIMENT, "moved": EXPERIMENT, "sliced": ExperimentState(metrics=CONVERSION),
    }), {})  # fmt: skip
    plan = plan_run(state, request(experiments=experiments), {"b": FileStamp(1, 1)})
    assert plan.modes == {"k": "incremental", "new": "full", "moved": "full", "sliced": "full"}
    assert plan.reasons["new"] == "no state for this experiment"
    assert plan.reasons["moved"] == "metrics or their definitions changed: conversion"
    assert plan.reasons["sliced"] == "dimensions changed"
    assert plan.added == ("b",) and plan.mode == "incremental"


def test_a_late_exposure_before_day0_moves_it() -> None:
    assert day0_moved(EXPERIMENT, 999) and not day0_moved(EXPERIMENT, 1_000)
    assert not day0_moved(EXPERIMENT, None) and not day0_moved(ExperimentState(metrics={}), 5)
