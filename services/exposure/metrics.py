"""Prometheus metrics of the exposure service; every label value comes from a fixed set."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import multiprocess_directory
from services.common.topics import KINDS, Kind
from services.exposure.producer import KafkaSink
from services.exposure.spool import Spool
from services.exposure.validation import REASON_CLASSES, ReasonClass

GAUGE_REFRESH_SECONDS = 1.0
GaugeMode = Literal["livesum", "livemax", "livemin"]
PRODUCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ExposureMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        accepted = Counter(
            "assay_exposure_items_accepted_total", "items accepted (acked by the broker or spooled)",
            ["kind"], registry=registry,
        )  # fmt: skip
        rejected = Counter(
            "assay_exposure_items_rejected_total", "items rejected, by reason class", ["kind", "reason"],
            registry=registry,
        )  # fmt: skip
        spooled = Counter(
            "assay_exposure_items_spooled_total",
            "items written to the disk spool",
            ["kind"],
            registry=registry,
        )
        replayed = Counter(
            "assay_exposure_items_replayed_total", "spooled items acked by the broker on replay", ["kind"],
            registry=registry,
        )  # fmt: skip
        self.accepted = {kind: accepted.labels(kind) for kind in KINDS}
        self.spooled = {kind: spooled.labels(kind) for kind in KINDS}
        self.replayed = {kind: replayed.labels(kind) for kind in KINDS}
        self.rejected: dict[tuple[Kind, ReasonClass], Counter] = {
            (kind, reason): rejected.labels(kind, reason) for kind in KINDS for reason in REASON_CLASSES
        }
        self.corrupt = Counter(
            "assay_exposure_spool_corrupt_records_total",
            "damaged or torn spool records skipped during replay", registry=registry,
        )  # fmt: skip
        self.spool_full = Counter(
            "assay_exposure_spool_full_total", "requests refused with 503 because the spool was full",
            registry=registry,
        )  # fmt: skip
        self.produce_seconds = Histogram(
            "assay_exposure_produce_seconds",
            "time until the broker acked all items of a request or replay batch",
            ["path"], buckets=PRODUCE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.registry = registry
        self._refreshers: list[tuple[Gauge, Callable[[], float]]] = []

    def watch(self, spool: Spool, sink: KafkaSink) -> None:
        """Gauges of the spool and the producer. In one process they are read at scrape time.
        With several workers each worker sets its own values (`refresh`, called every second
        and before it answers a scrape) and a scrape adds them up over the live workers: the
        spool figures are sums over the workers' spool slots, the oldest age is the maximum,
        and the broker counts as connected only while every worker is."""
        gauges: dict[str, tuple[str, GaugeMode, Callable[[], float]]] = {
            "assay_exposure_spool_bytes": ("bytes held by the spool on disk", "livesum", lambda: spool.stats().bytes),
            "assay_exposure_spool_records": ("records waiting in the spool", "livesum", lambda: spool.pending_records),
            "assay_exposure_spool_segments": ("spool segment files", "livesum", lambda: spool.stats().segments),
            "assay_exposure_spool_oldest_age_seconds": (
                "age of the oldest unreplayed spool segment (0 when empty)", "livemax",
                lambda: spool.stats().oldest_age_seconds or 0.0,
            ),
            "assay_exposure_broker_connected": (
                "1 while a Kafka producer is connected (every worker's)", "livemin", lambda: float(sink.connected),
            ),
        }  # fmt: skip
        shared = multiprocess_directory() is not None
        for name, (description, mode, read) in gauges.items():
            gauge = Gauge(name, description, registry=self.registry, multiprocess_mode=mode)
            if shared:
                self._refreshers.append((gauge, read))
            else:
                gauge.set_function(read)
        self.refresh()

    def refresh(self) -> None:
        """Set this worker's gauge values (only needed with several workers)."""
        for gauge, read in self._refreshers:
            gauge.set(read())

    async def run_refresher(self, seconds: float = GAUGE_REFRESH_SECONDS) -> None:
        if not self._refreshers:
            return
        while True:
            await asyncio.sleep(seconds)
            self.refresh()
