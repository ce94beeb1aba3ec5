"""The scheduler's status file (`run --every`), and the health verdict its probe draws from it.

The scheduler writes when it starts, when a round starts and when one ends (with what the
round did: experiments computed, partitions, files and rows read, seconds, full or
incremental; the log line "metrics run finished" carries the same). It is healthy
while the current round has run less than the round timeout and the last successful round
ended less than one interval plus that timeout ago, so a job that waits forever (a cluster
with no free executors, a hung read) turns the container unhealthy instead of staying green.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class SchedulerStatus:
    every_seconds: float
    round_timeout_seconds: float
    started_at: float
    round_started_at: float | None = None
    round_finished_at: float | None = None
    last_success_at: float | None = None
    last_failures: int = 0
    last_run: dict[str, Any] | None = None  # the last round's figures (see `batch.RunStats`)
    # Since the scheduler started: experiments computed incrementally, and in full (each full
    # one with its reason in the round's `full_reasons` and in the log line "full recompute").
    incremental_computations: int = 0
    full_recomputes: int = 0


def write_status(path: Path, status: SchedulerStatus) -> SchedulerStatus:
    """Atomically replace the status file (a reader never sees half a document)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(status)))
    temporary.replace(path)
    return status


def round_started(path: Path, status: SchedulerStatus, now: float) -> SchedulerStatus:
    return write_status(path, replace(status, round_started_at=now))


def round_finished(path: Path, status: SchedulerStatus, now: float, failures: int,
                   run: Mapping[str, Any] | None = None) -> SchedulerStatus:  # fmt: skip
    success = now if failures == 0 else status.last_success_at
    figures = dict(run) if run is not None else status.last_run
    run = run or {}
    return write_status(path, replace(
        status, round_finished_at=now, last_success_at=success, last_failures=failures, last_run=figures,
        incremental_computations=status.incremental_computations + int(run.get("incremental_experiments", 0)),
        full_recomputes=status.full_recomputes + len(run.get("full_reasons") or {}),
    ))  # fmt: skip


def verdict(status: SchedulerStatus, now: float) -> str | None:
    """None when healthy, else a sentence saying what is wrong."""
    running = status.round_started_at is not None and (
        status.round_finished_at is None or status.round_finished_at < status.round_started_at
    )
    if running and status.round_started_at is not None:
        elapsed = now - status.round_started_at
        if elapsed > status.round_timeout_seconds:
            return (f"the current round has run {elapsed:.0f} s (limit {status.round_timeout_seconds:.0f} s): "
                    "the job may be waiting for executors; see the scheduler's log")  # fmt: skip
    since = status.last_success_at if status.last_success_at is not None else status.started_at
    overdue = now - since - status.every_seconds - status.round_timeout_seconds
    if overdue > 0:
        return f"no successful round for {now - since:.0f} s (interval {status.every_seconds:.0f} s)"
    return None


def read_status(path: Path) -> SchedulerStatus:
    return SchedulerStatus(**json.loads(path.read_text()))


def unhealthy_reason(path: Path, now: float | None = None) -> str | None:
    try:
        status = read_status(path)
    except (OSError, ValueError, TypeError) as exc:
        return f"no readable scheduler status at {path}: {exc}"
    return verdict(status, time.time() if now is None else now)
