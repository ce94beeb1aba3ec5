"""Background delivery of exposures and events to the exposure service.

Items get a stable `event_id` when they are queued, so a retried batch never counts twice.
The queue is bounded: when it is full the newest item is dropped and counted, and the
caller is never blocked. Delivery retries network errors, 429 and 5xx with exponential
backoff and jitter (honouring Retry-After); a 413 splits the batch in two.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx

log = logging.getLogger("assay.sdk")
Kind = Literal["exposures", "events"]


@dataclass
class DeliveryStats:
    queued: int = 0
    sent: int = 0
    rejected: int = 0
    dropped_queue_full: int = 0
    dropped_after_retries: int = 0
    retries: int = 0
    batches: int = 0

    def snapshot(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 0.1
    max_seconds: float = 10.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.max_seconds)
        # "Full jitter" keeps many clients from retrying in lockstep.
        return random.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt))


class EventSender:
    def __init__(
        self, http: httpx.Client, *, batch_size: int = 100, flush_interval: float = 1.0,
        max_queue: int = 10_000, retry: RetryPolicy | None = None,
    ) -> None:  # fmt: skip
        self.http = http
        self.batch_size = max(1, min(batch_size, 1000))
        self.flush_interval = flush_interval
        self.retry = retry or RetryPolicy()
        self.stats = DeliveryStats()
        self._queue: queue.Queue[tuple[Kind, dict[str, Any]]] = queue.Queue(maxsize=max_queue)
        self._pending = 0
        self._idle = threading.Condition()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="assay-event-sender", daemon=True)
        self._thread.start()

    def enqueue(self, kind: Kind, item: dict[str, Any]) -> bool:
        """Queue one item; False (and counted) when the queue is full. Never blocks."""
        with self._idle:
            try:
                self._queue.put_nowait((kind, item))
            except queue.Full:
                self.stats.dropped_queue_full += 1
                return False
            self._pending += 1
            self.stats.queued += 1
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is delivered (or given up); True when idle."""
        self._wake.set()
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        self.flush(timeout)
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not (self._closing.is_set() and self._queue.empty()):
            batch = self._collect()
            if not batch:
                continue
            for kind in ("exposures", "events"):
                items = [item for k, item in batch if k == kind]
                if items:
                    self._deliver(kind, items)
            self._done(len(batch))

    def _collect(self) -> list[tuple[Kind, dict[str, Any]]]:
        batch: list[tuple[Kind, dict[str, Any]]] = []
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            urgent = self._wake.is_set() or self._closing.is_set()
            if remaining <= 0 or (urgent and self._queue.empty()):
                break
            try:
                batch.append(self._queue.get(timeout=0.0 if urgent else min(remaining, 0.05)))
            except queue.Empty:
                continue
        if self._queue.empty():
            self._wake.clear()
        return batch

    def _done(self, count: int) -> None:
        with self._idle:
            self._pending -= count
            if self._pending == 0:
                self._idle.notify_all()

    def _deliver(self, kind: Kind, items: list[dict[str, Any]]) -> None:
        for attempt in range(self.retry.max_attempts):
            try:
                response = self.http.post(f"/v1/{kind}", json={kind: items})
            except httpx.HTTPError as exc:
                log.warning("assay delivery failed (%s); retrying", type(exc).__name__)
                retry_after = None
            else:
                if response.status_code == 202:
                    rejected = len(response.json().get("rejected", []))
                    self.stats.sent += len(items) - rejected
                    self.stats.rejected += rejected
                    self.stats.batches += 1
                    return
                if response.status_code == 413 and len(items) > 1:
                    half = len(items) // 2
                    self._deliver(kind, items[:half])
                    self._deliver(kind, items[half:])
                    return
                if response.status_code != 429 and response.status_code < 500:
                    status = response.status_code
                    log.error("assay refused a batch of %d %s: HTTP %d", len(items), kind, status)
                    self.stats.rejected += len(items)
                    return
                retry_after = response.headers.get("retry-after")
            self.stats.retries += 1
            self._closing.wait(self.retry.delay(attempt, retry_after))
        self.stats.dropped_after_retries += len(items)
        log.error("assay dropped %d %s after %d attempts", len(items), kind, self.retry.max_attempts)
