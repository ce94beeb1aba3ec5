"""The metrics job's state between runs: versioned directories and one pointer (issue 13).

An incremental rerun reads the lake files that are new since the previous run plus what the
previous run kept here; anything that makes that state unusable sends the run (or one
experiment) back to a full recompute, with the reason logged and counted, never to a wrong
result. This module is the storage and the decision; what the job keeps in a state directory
(Parquet tables of per-unit rows and contributions) is the job's business.

Layout under `ASSAY_DATA_DIR/state/`:

    CURRENT                 the name of the committed version ("v-<run id>"), nothing else
    v-<run id>/             one committed version, never modified after its commit
        <tables>            whatever the job wrote while staging
        manifest.json       the lake files the version reflects: path -> [size, mtime_ns]
        meta.json           StateMeta (written last inside the directory)
    .staging-<run id>/      a run at work (or one killed at work: removed by the next run)

Commit order: the job writes its tables into the staging directory, `commit` writes the
manifest and meta (durably), renames the staging directory to `v-<run id>`, and then replaces
CURRENT atomically: that rename is the commit point. A run killed at any moment before it
leaves the previous version current; the next run finds the same new lake files and redoes
the same increment. The job publishes results before it commits state, so a kill between
the two costs one repeated increment, never a document that disagrees with its state.
Two versions are kept (the current and the one it replaced); every other version directory
(older ones, and one a killed run renamed but never made current) is pruned after a commit.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from services.common.durable import ensure_dir, fsync_dir, write_bytes_atomic

# Bump when what the job keeps, or how it computes from it, changes: state written by another
# version is never reused.
STATE_VERSION = 5
CURRENT = "CURRENT"
META, MANIFEST = "meta.json", "manifest.json"
VERSION_PREFIX, STAGING_PREFIX = "v-", ".staging-"

Mode = Literal["incremental", "full"]


@dataclass(frozen=True, order=True)
class FileStamp:
    """What tells a lake file apart from a rewritten one at the same path."""

    size: int
    mtime_ns: int


Manifest = dict[str, FileStamp]


def stamp_files(lake_dir: Path, files: Iterable[Path]) -> Manifest:
    """Stamps of `files`, keyed by their path relative to the lake (files that vanished since
    they were listed are left out: the next listing tells)."""
    manifest: Manifest = {}
    for path in files:
        try:
            status = path.stat()
        except FileNotFoundError:
            continue
        manifest[path.relative_to(lake_dir).as_posix()] = FileStamp(status.st_size, status.st_mtime_ns)
    return manifest


@dataclass(frozen=True)
class ManifestDiff:
    added: tuple[str, ...]
    changed: tuple[str, ...]
    vanished: tuple[str, ...]

    @property
    def rewritten(self) -> bool:
        """A file the state reflects is no longer what it was: the state cannot be patched."""
        return bool(self.changed or self.vanished)


def manifest_diff(previous: Mapping[str, FileStamp], current: Mapping[str, FileStamp]) -> ManifestDiff:
    return ManifestDiff(
        added=tuple(sorted(path for path in current if path not in previous)),
        changed=tuple(sorted(path for path in current if path in previous and current[path] != previous[path])),
        vanished=tuple(sorted(path for path in previous if path not in current)),
    )


class ExperimentState(BaseModel):
    """What one experiment's kept rows and contributions were computed with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: dict[str, str]  # name -> catalog definition hash
    dimensions: tuple[str, ...] = ()
    day0_us: int | None = None  # the experiment's first exposure day; a move means a full recompute


class StateMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state_version: int
    run_id: str
    as_of_us: int
    lateness_us: int
    late_threshold_us: int
    experiments: dict[str, ExperimentState]


@dataclass(frozen=True)
class LoadedState:
    directory: Path
    meta: StateMeta
    manifest: Manifest


@dataclass(frozen=True)
class Unusable:
    """No usable state; `reason` goes to the log and the counter of full recomputes."""

    reason: str


@dataclass(frozen=True)
class RunRequest:
    """What a run is about to compute, to be checked against the state."""

    as_of_us: int
    lateness_us: int
    late_threshold_us: int
    experiments: Mapping[str, ExperimentState]
    force_full: bool = False


@dataclass(frozen=True)
class RunPlan:
    """Per experiment, incremental or full (with why); the lake files that are new."""

    modes: dict[str, Mode]
    reasons: dict[str, str] = field(default_factory=dict)
    added: tuple[str, ...] = ()

    @property
    def mode(self) -> Mode:
        """The run's mode: incremental when any experiment is."""
        return "incremental" if "incremental" in self.modes.values() else "full"

    def full(self, reason: str) -> RunPlan:
        return RunPlan({key: "full" for key in self.modes}, {key: reason for key in self.modes})


def plan_run(state: LoadedState | Unusable, request: RunRequest, listing: Mapping[str, FileStamp]) -> RunPlan:
    """Which experiments can be computed from the state plus the new files, and why not the
    others. Anything doubtful is a full recompute."""
    everything = RunPlan({key: "full" for key in request.experiments})
    if request.force_full:
        return everything.full("forced (run --full)")
    if isinstance(state, Unusable):
        return everything.full(state.reason)
    meta = state.meta
    if meta.state_version != STATE_VERSION:
        return everything.full(f"state version {meta.state_version}, this job keeps version {STATE_VERSION}")
    if (meta.lateness_us, meta.late_threshold_us) != (request.lateness_us, request.late_threshold_us):
        return everything.full("allowed lateness or late threshold changed")
    if request.as_of_us < meta.as_of_us:
        return everything.full("as-of is earlier than the state's")
    diff = manifest_diff(state.manifest, listing)
    if diff.rewritten:
        first = (diff.changed or diff.vanished)[0]
        what = "changed" if diff.changed else "vanished"
        return everything.full(f"lake file {what} since the state was kept: {first}")
    modes: dict[str, Mode] = {}
    reasons: dict[str, str] = {}
    for key, wanted in request.experiments.items():
        kept = meta.experiments.get(key)
        reason = _experiment_mismatch(kept, wanted)
        modes[key] = "full" if reason else "incremental"
        if reason:
            reasons[key] = reason
    return RunPlan(modes, reasons, diff.added)


def day0_moved(kept: ExperimentState, earliest_new_exposure_day_us: int | None) -> bool:
    """A late exposure before the kept day 0 shifts every day index of the experiment: the job
    checks this once it has read the new exposure files, and recomputes the experiment fully."""
    return (
        kept.day0_us is not None
        and earliest_new_exposure_day_us is not None
        and earliest_new_exposure_day_us < kept.day0_us
    )


def _experiment_mismatch(kept: ExperimentState | None, wanted: ExperimentState) -> str | None:
    if kept is None:
        return "no state for this experiment"
    if kept.metrics != wanted.metrics:
        changed = sorted(set(kept.metrics.items()) ^ set(wanted.metrics.items()))
        return f"metrics or their definitions changed: {', '.join(sorted({name for name, _ in changed}))}"
    if kept.dimensions != wanted.dimensions:
        return "dimensions changed"
    return None


class StateStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def load(self) -> LoadedState | Unusable:
        """The committed version, or why there is none that can be used."""
        pointer = self.root / CURRENT
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return Unusable("no state yet")
        except (OSError, UnicodeDecodeError) as exc:
            return Unusable(f"state pointer unreadable: {exc}")
        if not name.startswith(VERSION_PREFIX) or "/" in name or name in (".", ".."):
            return Unusable(f"state pointer names no version: {name[:80]!r}")
        directory = self.root / name
        try:
            meta = StateMeta.model_validate_json((directory / META).read_bytes())
            manifest = _read_manifest(directory / MANIFEST)
        except FileNotFoundError as exc:
            return Unusable(f"state {name} is incomplete: {Path(exc.filename or '?').name} missing")
        except (OSError, ValidationError, ValueError, TypeError) as exc:
            return Unusable(f"state {name} is corrupt: {type(exc).__name__}: {str(exc)[:200]}")
        return LoadedState(directory, meta, manifest)

    def stage(self, run_id: str | None = None) -> Path:
        """A fresh staging directory for this run's tables (earlier runs' leftovers removed)."""
        ensure_dir(self.root)
        self.discard_staging()
        run_id = run_id or uuid.uuid4().hex[:12]
        staging = self.root / f"{STAGING_PREFIX}{run_id}"
        staging.mkdir()
        return staging

    def commit(self, staging: Path, meta: StateMeta, manifest: Mapping[str, FileStamp]) -> Path:
        """Seal the staging directory as version `v-<run id>` and make it current."""
        if staging.parent != self.root or not staging.name.startswith(STAGING_PREFIX):
            raise ValueError(f"{staging} is not a staging directory of {self.root}")
        write_bytes_atomic(staging / MANIFEST, _manifest_bytes(manifest))
        write_bytes_atomic(staging / META, meta.model_dump_json(indent=1).encode() + b"\n")
        _fsync_tree(staging)
        final = self.root / f"{VERSION_PREFIX}{meta.run_id}"
        previous = self._current_name()
        staging.rename(final)
        fsync_dir(self.root)
        write_bytes_atomic(self.root / CURRENT, f"{final.name}\n".encode())  # the commit point
        self._prune(keep={final.name} | ({previous} if previous else set()))
        return final

    def _current_name(self) -> str | None:
        try:
            return (self.root / CURRENT).read_text(encoding="utf-8").strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def discard_staging(self) -> list[Path]:
        """Remove staging directories of runs that never committed (killed or failed)."""
        removed = []
        for path in self.root.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        return removed

    def clear(self) -> None:
        """Forget every version (the next run is full)."""
        (self.root / CURRENT).unlink(missing_ok=True)
        for path in self.root.glob(f"{VERSION_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)

    def _prune(self, keep: set[str]) -> None:
        """Remove every version but `keep` (the new current one and the one it replaced): a
        directory renamed by a run killed before it switched CURRENT was never committed."""
        for path in self.root.glob(f"{VERSION_PREFIX}*"):
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)


def _manifest_bytes(manifest: Mapping[str, FileStamp]) -> bytes:
    data = {path: [stamp.size, stamp.mtime_ns] for path, stamp in sorted(manifest.items())}
    return json.dumps(data, indent=0).encode() + b"\n"


def _read_manifest(path: Path) -> Manifest:
    data = json.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise ValueError("the manifest is not an object")
    manifest: Manifest = {}
    for name, stamp in data.items():
        if not (isinstance(stamp, list) and len(stamp) == 2 and all(type(v) is int for v in stamp)):
            raise ValueError(f"bad manifest entry for {name!r}")
        manifest[name] = FileStamp(stamp[0], stamp[1])
    return manifest


def _fsync_tree(directory: Path) -> None:
    """Persist every file and directory entry below `directory` (the job's tables)."""
    for path in sorted(directory.rglob("*"), reverse=True):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(directory)
