"""The assignment service's own Prometheus metrics (HTTP metrics are `services.common`'s)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import get_args

from assay.evaluation import Reason
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from services.assignment.assigner import UnitAnswer
from services.assignment.sticky import RedisStickyResolver
from services.common.registry.cache import ConfigCache


class StickyRoundTrips(Collector):
    """How well concurrent requests share Redis round trips (read from the resolver's batcher)."""

    def __init__(self, sticky: RedisStickyResolver) -> None:
        self.sticky = sticky

    def collect(self) -> Iterator[CounterMetricFamily]:
        batcher = self.sticky.batcher
        yield CounterMetricFamily("assay_sticky_round_trips", "pipelined sticky-store calls sent to Redis",
                                  value=batcher.batches)  # fmt: skip
        yield CounterMetricFamily("assay_sticky_lookups", "requests whose sticky lookups went to Redis",
                                  value=batcher.submissions)  # fmt: skip


class AssignMetrics:
    def __init__(self, registry: CollectorRegistry, cache: ConfigCache, sticky: RedisStickyResolver) -> None:
        self.degraded = Counter(
            "assay_assign_degraded_total",
            "assignment answers computed without the sticky store (Redis unavailable)",
            registry=registry,
        )
        assignments = Counter(
            "assay_assignments_total", "assignment decisions by reason", ["reason"], registry=registry
        )
        self.reasons = {reason: assignments.labels(reason) for reason in get_args(Reason)}
        config_version = Gauge("assay_config_version", "config version served from the cache", registry=registry)
        config_version.set_function(lambda: cache.snapshot.version)
        registry.register(StickyRoundTrips(sticky))

    def count(self, answers: list[UnitAnswer]) -> None:
        for answer in answers:
            if answer.degraded:
                self.degraded.inc()
            for decision in answer.assignments.values():
                self.reasons[decision.reason].inc()
