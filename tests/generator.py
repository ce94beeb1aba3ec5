"""A seeded experiment with known truth, as the Kafka records the exposure service produces.

`generate(seed, ...)` returns exposures and events (dicts in the topic format: item fields
plus `received_at`, RFC 3339 UTC with milliseconds) and the truth behind them:
- assignments come from the real evaluation code (`assay.evaluation.evaluate`), so about
  `1 - traffic` of the units are never exposed but still produce events;
- each unit has a latent engagement that drives its sessions and purchases both in the
  14 days before its first exposure and after it, so the pre-period predicts the
  post-period (CUPED matters);
- treatment converts `conversion_lift` more per session (relative), spends
  `revenue_lift` more per purchase, and loads pages `latency_lift` slower;
- imperfections: duplicates (same event_id re-sent later, or the same message twice),
  units exposed to both variants, events just before a unit's first exposure, purchases
  after the conversion window, exposures of another experiment, and late arrivals
  (received days after their timestamp), some of them after `first_as_of`.

Used by the metrics tests and the demo. Plain Python plus numpy's seeded generator.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from assay.evaluation import evaluate
from assay.models import ExperimentConfig
from assay.timefmt import format_rfc3339 as rfc3339  # the one formatter, named as the tests import it

Record = dict[str, Any]
PRE_PERIOD_DAYS = 14
OTHER_EXPERIMENT = "other-experiment"


@dataclass(frozen=True)
class Truth:
    """The parameters the data was drawn from, and the instants the tests compute at."""

    seed: int
    experiment: str
    variants: tuple[str, ...]
    weights: tuple[float, ...]
    traffic: float
    start: datetime
    days: int
    units: int
    sessions_per_day: float
    purchase_per_session: float
    conversion_lift: float
    revenue_per_purchase: float
    revenue_lift: float
    latency_ms: float
    latency_lift: float
    first_as_of: datetime
    final_as_of: datetime
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Generated:
    truth: Truth
    exposures: list[Record]
    events: list[Record]

    def received_between(self, after: datetime | None, until: datetime) -> tuple[list[Record], list[Record]]:
        """Records whose `received_at` is in (after, until]: what a broker holds by `until`."""

        def keep(record: Record) -> bool:
            received = datetime.fromisoformat(record["received_at"])
            return (after is None or received > after) and received <= until

        return [r for r in self.exposures if keep(r)], [r for r in self.events if keep(r)]


class _Builder:
    """Accumulates records; every id and delay comes from one seeded generator."""

    def __init__(self, rng: np.random.Generator, truth_final: datetime) -> None:
        self.rng = rng
        self.final = truth_final
        self.exposures: list[Record] = []
        self.events: list[Record] = []
        self.counts: dict[str, int] = {
            "duplicates": 0, "late": 0, "multiple_variant_units": 0, "before_exposure": 0,
            "unexposed_units": 0, "outside_window": 0,
        }  # fmt: skip

    def new_id(self) -> str:
        return str(uuid.UUID(int=int(self.rng.integers(0, 2**63)) << 64 | int(self.rng.integers(0, 2**63))))

    def received(self, moment: datetime, late_share: float) -> datetime:
        if self.rng.random() < late_share:
            self.counts["late"] += 1
            delay = timedelta(hours=float(self.rng.uniform(2, 150)))
        else:
            delay = timedelta(seconds=float(self.rng.uniform(0.05, 20)))
        return min(moment + delay, self.final - timedelta(hours=1))

    def emit(self, record: Record, moment: datetime, target: list[Record], late_share: float) -> None:
        received = self.received(moment, late_share)
        record = {**record, "timestamp": rfc3339(moment), "received_at": rfc3339(received)}
        target.append(record)
        roll = self.rng.random()
        if roll < 0.03:  # an SDK retry: same event_id, received again a little later
            self.counts["duplicates"] += 1
            again = received + timedelta(seconds=float(self.rng.uniform(1, 600)))
            target.append({**record, "received_at": rfc3339(min(again, self.final - timedelta(minutes=1)))})
        elif roll < 0.04:  # at-least-once delivery: the very same message twice
            self.counts["duplicates"] += 1
            target.append(dict(record))

    def exposure(self, experiment: str, variant: str, unit: str, moment: datetime) -> None:
        record = {"event_id": self.new_id(), "experiment": experiment, "variant": variant, "unit_id": unit}
        self.emit(record, moment, self.exposures, late_share=0.01)

    def event(self, name: str, unit: str, moment: datetime, value: float | None) -> None:
        record = {"event_id": self.new_id(), "name": name, "unit_id": unit, "value": value, "properties": {}}
        self.emit(record, moment, self.events, late_share=0.04)


def _session_times(rng: np.random.Generator, begin: datetime, end: datetime, per_day: float) -> list[datetime]:
    span = (end - begin).total_seconds()
    if span <= 0:
        return []
    count = int(rng.poisson(per_day * span / 86_400))
    return sorted(begin + timedelta(seconds=float(s)) for s in rng.uniform(0, span, count))


def _activity(builder: _Builder, truth: Truth, unit: str, times: list[datetime], engagement: float,
              treated: bool) -> None:  # fmt: skip
    rng = builder.rng
    purchase = truth.purchase_per_session * min(engagement, 3.0) * (1 + truth.conversion_lift * treated)
    for moment in times:
        builder.event("session_start", unit, moment, None)
        if rng.random() < 0.5:
            latency = rng.gamma(4.0, truth.latency_ms / 4.0) * (1 + truth.latency_lift * treated)
            builder.event("page_load", unit, moment + timedelta(seconds=1), float(round(latency)))
        if rng.random() < min(purchase, 0.95):
            spend = rng.lognormal(np.log(truth.revenue_per_purchase), 0.6) * (1 + truth.revenue_lift * treated)
            builder.event("purchase", unit, moment + timedelta(minutes=3), round(float(spend), 2))
        if rng.random() < 0.01:
            builder.event("client_error", unit, moment + timedelta(seconds=5), None)


def _unit(builder: _Builder, truth: Truth, config: ExperimentConfig, index: int) -> None:
    rng = builder.rng
    unit = f"u{index:06d}"
    engagement = float(rng.gamma(2.0, 0.5))
    rate = truth.sessions_per_day * engagement
    end = truth.start + timedelta(days=truth.days)
    first = truth.start + timedelta(seconds=float(rng.uniform(0, (truth.days - 1) * 86_400)))
    decision = evaluate(config, unit)
    treated = decision.variant not in (None, truth.variants[0])
    pre = _session_times(rng, first - timedelta(days=PRE_PERIOD_DAYS), first, rate)
    _activity(builder, truth, unit, pre, engagement, treated=False)
    if decision.variant is None:
        builder.counts["unexposed_units"] += 1
        _activity(builder, truth, unit, _session_times(rng, first, end, rate), engagement, treated=False)
        return
    post = [first, *_session_times(rng, first + timedelta(minutes=1), end, rate)]
    for moment in post[: 1 + int(rng.integers(0, 3))]:  # the SDK logs an exposure per session
        builder.exposure(truth.experiment, decision.variant, unit, moment)
    if rng.random() < 0.01:
        builder.counts["multiple_variant_units"] += 1
        other = next(v for v in truth.variants if v != decision.variant)
        builder.exposure(truth.experiment, other, unit, post[-1] + timedelta(minutes=1))
    if rng.random() < 0.2:
        builder.exposure(OTHER_EXPERIMENT, "a", unit, first + timedelta(hours=1))
    if rng.random() < 0.05:
        builder.counts["before_exposure"] += 1
        builder.event("purchase", unit, first - timedelta(hours=float(rng.uniform(0.5, 6))), 9.99)
    if first < truth.start + timedelta(days=2) and rng.random() < 0.1:
        builder.counts["outside_window"] += 1
        builder.event("purchase", unit, first + timedelta(days=8), 5.0)
    _activity(builder, truth, unit, post, engagement, treated)


def generate(seed: int = 7, *, units: int = 1000, days: int = 10, traffic: float = 0.9,
             experiment: str = "checkout-button", start: datetime | None = None) -> Generated:  # fmt: skip
    """A reproducible data set: the same arguments always give the same records."""
    start = start or datetime(2026, 10, 1, tzinfo=UTC)
    truth = Truth(
        seed=seed, experiment=experiment, variants=("control", "treatment"), weights=(0.5, 0.5),
        traffic=traffic, start=start, days=days, units=units, sessions_per_day=0.6,
        purchase_per_session=0.08, conversion_lift=0.25, revenue_per_purchase=30.0, revenue_lift=0.10,
        latency_ms=300.0, latency_lift=0.05, first_as_of=start + timedelta(days=days + 2),
        final_as_of=start + timedelta(days=days + 8),
    )  # fmt: skip
    config = ExperimentConfig(
        key=experiment, salt=experiment, traffic=traffic,
        variants=[{"key": k, "weight": w} for k, w in zip(truth.variants, truth.weights, strict=True)],
    )  # fmt: skip
    builder = _Builder(np.random.default_rng(seed), truth.final_as_of)
    for index in range(units):
        _unit(builder, truth, config, index)
    truth = Truth(**{**truth.__dict__, "counts": dict(builder.counts)})
    return Generated(truth, builder.exposures, builder.events)
