"""Prometheus metrics, one registry per app (no process-global state for tests to reset).

With several worker processes (`services.common.runtime.serve_workers`) prometheus-client
runs in its multiprocess mode: counters and histograms are written to per-process files in
the directory named by `PROMETHEUS_MULTIPROC_DIR`, and `render` adds up every worker's.
Gauges then need a `multiprocess_mode` and explicit values (`set_function` is per process);
see `ExposureMetrics.watch`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


class HttpMetrics:
    """Request counts and latency by route template (never by raw path: bounded labels)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "assay_http_requests_total",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "assay_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # Label lookups cost more than the increments; routes and statuses are few.
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def multiprocess_directory() -> Path | None:
    """The directory of the worker processes' metric files, or None in a single process."""
    value = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    return Path(value) if value else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_workers() -> list[int]:
    """Drop the live-gauge files of workers that are gone (a worker that died and was
    restarted has a new pid), so `livesum` and friends count live workers only. Their
    counters stay: a counter of the service never goes down. Returns the pids forgotten."""
    directory = multiprocess_directory()
    if directory is None:
        return []
    dead = set()
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.match(path.name)
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(directory))
    return sorted(dead)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    directory = multiprocess_directory()
    if directory is None:
        return generate_latest(registry), CONTENT_TYPE_LATEST
    every_worker = CollectorRegistry()
    multiprocess.MultiProcessCollector(every_worker, path=str(directory))
    return generate_latest(every_worker), CONTENT_TYPE_LATEST
