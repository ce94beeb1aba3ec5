"""Where accepted items go: straight to Kafka, or to the disk spool, and the replay loop.

A 202 is sent only after every accepted item is acked by the broker or fsynced to the
spool. While the spool holds anything (or no producer is connected) new items are spooled
too, so the replay stays oldest-first.

Duplicates (removed downstream by `event_id`) can happen when:
- a produce times out but the broker did store the batch; the items are also spooled;
- a replay batch is partly acked and then retried as a whole;
- the process dies after the broker acked a replay batch and before the checkpoint moved;
- a request is answered 503 (full spool) after some of its items reached the broker, and
  the client retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

from services.common.topics import KIND_OF_TOPIC, Kind
from services.exposure.metrics import ExposureMetrics
from services.exposure.producer import KafkaSink
from services.exposure.settings import ExposureSettings
from services.exposure.spool import ReplayBatch, Spool, SpoolFull
from services.exposure.spool_format import SpoolEntry

log = logging.getLogger("assay.exposure.delivery")
IDLE_SECONDS = 1.0
UNREACHABLE_LOG_SECONDS = 30.0


class SpoolUnavailable(Exception):
    """The spool could not be written (disk error); nothing from the request was stored."""


class Delivery:
    def __init__(self, sink: KafkaSink, spool: Spool, metrics: ExposureMetrics, settings: ExposureSettings) -> None:
        self.sink = sink
        self.spool = spool
        self.metrics = metrics
        self.settings = settings
        self._wake = asyncio.Event()
        self._unreachable_since: float | None = None
        self._last_warning = 0.0

    async def deliver(self, kind: Kind, entries: list[SpoolEntry]) -> None:
        """Return once every entry is acked or spooled; raise SpoolFull / SpoolUnavailable."""
        if not entries:
            return
        if self.spool.has_data or not self.sink.connected:
            await self._spool(kind, entries)
            return
        started = time.perf_counter()
        acked = await self.sink.produce(entries)
        if all(acked):
            self.metrics.produce_seconds.labels("direct").observe(time.perf_counter() - started)
            return
        await self._spool(kind, [entry for entry, ok in zip(entries, acked, strict=True) if not ok])

    async def _spool(self, kind: Kind, entries: list[SpoolEntry]) -> None:
        try:
            await asyncio.to_thread(self.spool.append, entries)
        except SpoolFull:
            self.metrics.spool_full.inc()
            raise
        except OSError as exc:
            log.error("could not write the spool", extra={"error": str(exc)})
            raise SpoolUnavailable(str(exc)) from exc
        self.metrics.spooled[kind].inc(len(entries))
        self._wake.set()

    # --- replay ------------------------------------------------------------------------

    async def run_replayer(self) -> None:
        """Forever: reconnect when the producer is gone, replay the spool oldest first."""
        while True:
            try:
                await self._replay_step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("spool replay step failed; retrying")
                await asyncio.sleep(self.settings.kafka_retry_seconds)

    async def _replay_step(self) -> None:
        if not self.sink.connected and not await self.sink.connect():
            self._warn_unreachable()
            await asyncio.sleep(self.settings.kafka_retry_seconds)
            return
        self._unreachable_since = None
        if not self.spool.has_data:
            await self._idle()
            return
        batch = await asyncio.to_thread(self.spool.next_batch, self.settings.spool_replay_batch)
        if batch is None:
            return
        if batch.entries:
            started = time.perf_counter()
            acked = await self.sink.produce(batch.entries)
            if not all(acked):
                await asyncio.sleep(self.settings.kafka_retry_seconds)
                return
            self.metrics.produce_seconds.labels("replay").observe(time.perf_counter() - started)
        await asyncio.to_thread(self.spool.commit, batch)
        self._count(batch)

    def _warn_unreachable(self) -> None:
        """One warning when the broker is first found away, then one every UNREACHABLE_LOG_SECONDS."""
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = self._last_warning = now
        elif now - self._last_warning < UNREACHABLE_LOG_SECONDS:
            return
        self._last_warning = now
        stats = self.spool.stats()
        log.warning(
            "Kafka is unreachable; spooling to disk",
            extra={"error": self.sink.last_error, "for_seconds": round(now - self._unreachable_since, 1),
                   "spool_records": stats.records, "spool_bytes": stats.bytes},
        )  # fmt: skip

    def _count(self, batch: ReplayBatch) -> None:
        for topic, count in Counter(entry.topic for entry in batch.entries).items():
            self.metrics.replayed[KIND_OF_TOPIC.get(topic, "event")].inc(count)
        for damage in batch.damage:
            self.metrics.corrupt.inc()
            log.warning(
                "skipped a damaged spool record",
                extra={"segment": batch.segment, "offset": damage.offset, "bytes": damage.length,
                       "torn_tail": damage.torn},
            )  # fmt: skip

    async def _idle(self) -> None:
        self._wake.clear()
        if self.spool.has_data:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), IDLE_SECONDS)
