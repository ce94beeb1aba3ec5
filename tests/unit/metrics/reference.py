"""An independent plain-Python computation of the metrics job's results (no Spark).

Written straight from the definitions, one snapshot at a time: keep the rows whose event
time and receipt are within the snapshot's cutoffs, keep the first-received copy of each
event_id, find each unit's first exposure and variants, and sum per-unit values in exact
decimals. Slices: each analysed unit's first exposure (earliest time, then smallest
event_id) gives its value of each dimension; the 20 values with most units (then the
smaller value) keep their slice, others are `__other__`, absent ones `__missing__`.
Quantile metrics: the sorted event values of the variant, x_(k) by index. It shares nothing
with the job but the catalog models (and, for the outer window, the scorecard's own
`outer_window_probabilities`), so agreement between the two is evidence that the job's
incremental (delta) and Spark-side computations are right.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from services.common.catalog import EventMeasure, MetricDefinition
from services.scorecard.stats.quantile import outer_window_probabilities

TOP_VALUES = 20
OTHER, MISSING = "__other__", "__missing__"

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = 1_000_000
HOUR = 3600 * SECOND
DAY = 24 * HOUR


def micros(text: str) -> int:
    delta = datetime.fromisoformat(text) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def text_of(value: int) -> str:
    return (EPOCH + timedelta(microseconds=value)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Item:
    event_id: str
    unit: str
    ts: int
    received: int
    name: str = ""
    variant: str = ""
    value: float | None = None
    attributes: tuple[tuple[str, str], ...] = ()


def items(records: Sequence[dict[str, Any]]) -> list[Item]:
    return [
        Item(
            r["event_id"],
            r["unit_id"],
            micros(r["timestamp"]),
            micros(r["received_at"]),
            r.get("name", ""),
            r.get("variant", ""),
            r.get("value"),
            tuple(sorted((r.get("attributes") or {}).items())),
        )
        for r in records
    ]


def first_copies(rows: list[Item]) -> list[Item]:
    best: dict[str, Item] = {}
    for row in rows:
        if row.event_id not in best or row.received < best[row.event_id].received:
            best[row.event_id] = row
    return list(best.values())


def amount(measure: EventMeasure, event: Item) -> Decimal:
    if measure.value is None:
        return Decimal(1)
    return Decimal(repr(event.value)) if event.value is not None else Decimal(0)


def unit_values(metric: MetricDefinition, first: int, events: list[Item]) -> tuple[Decimal, Decimal, Decimal]:
    """(y, d, x): metric value, ratio denominator, CUPED covariate of one unit."""
    window = None if metric.window_hours is None else round(metric.window_hours * HOUR)
    lookback = lookback_days(metric) * DAY

    def post(event: Item) -> bool:
        return event.ts >= first and (window is None or event.ts < first + window)

    numerator, denominator = metric.numerator_measure, metric.denominator
    y = sum((amount(numerator, e) for e in events if e.name == numerator.event and post(e)), Decimal(0))
    x = sum(
        (amount(numerator, e) for e in events if e.name == numerator.event and first - lookback <= e.ts < first),
        Decimal(0),
    )
    d = Decimal(0)
    if denominator is not None:
        d = sum((amount(denominator, e) for e in events if e.name == denominator.event and post(e)), Decimal(0))
    if metric.type == "proportion":
        y, x = Decimal(int(y > 0)), Decimal(int(x > 0))
    return y, d, x


def lookback_days(metric: MetricDefinition) -> int:
    return 0 if metric.type == "quantile" else metric.cuped_lookback_days


def quantile_values(metric: MetricDefinition, first: int, events: list[Item]) -> list[Decimal]:
    """The values of one unit's events that the quantile metric counts (valued ones only)."""
    window = None if metric.window_hours is None else round(metric.window_hours * HOUR)
    inside = [e for e in events if e.ts >= first and (window is None or e.ts < first + window)]
    return [Decimal(repr(e.value)) for e in inside if e.name == metric.event and e.value is not None]


def quantile_block(probability: float, per_unit: list[list[Decimal]]) -> dict[str, Any]:
    ordered = sorted(v for values in per_unit for v in values)
    n = len(ordered)
    if n == 0:
        nothing = dict.fromkeys(("value", "lower_probability", "upper_probability", "lower_value", "upper_value"))
        counts = ("events_below", "events_below_squares", "events_squares", "events_products")
        return {"probability": probability, "n_events": 0, **nothing, **dict.fromkeys(counts, 0)}
    k = max(1, math.ceil(Fraction(repr(probability)) * n))
    lower, upper = outer_window_probabilities(probability, n)

    def at(rank: int) -> float:
        return float(ordered[min(n, max(1, rank)) - 1])

    value = ordered[k - 1]
    below = [sum(1 for v in values if v <= value) for values in per_unit]
    sizes = [len(values) for values in per_unit]
    return {
        "probability": probability, "n_events": n, "value": float(value), "lower_probability": lower,
        "upper_probability": upper, "lower_value": at(math.ceil(n * lower)), "upper_value": at(math.ceil(n * upper)),
        "events_below": sum(below), "events_below_squares": sum(s * s for s in below),
        "events_squares": sum(m * m for m in sizes),
        "events_products": sum(s * m for s, m in zip(below, sizes, strict=True)),
    }  # fmt: skip


def variant_block(metric: MetricDefinition, key: str, values: list[tuple[Decimal, Decimal, Decimal]]) -> dict:
    def total(terms: Any) -> float:
        return float(sum(terms, Decimal(0)))

    block: dict[str, Any] = {
        "key": key, "n": len(values), "sum": total(y for y, _, _ in values),
        "sum_squares": total(y * y for y, _, _ in values),
    }  # fmt: skip
    if lookback_days(metric) > 0:
        block["covariate"] = {
            "sum": total(x for _, _, x in values), "sum_squares": total(x * x for _, _, x in values),
            "sum_products": total(y * x for y, _, x in values),
        }  # fmt: skip
        if metric.type == "ratio":
            block["covariate"]["denominator_products"] = total(d * x for _, d, x in values)
    if metric.type == "ratio":
        block["denominator"] = {
            "sum": total(d for _, d, _ in values), "sum_squares": total(d * d for _, d, _ in values),
            "sum_products": total(y * d for y, d, _ in values),
        }  # fmt: skip
    return block


def exposure_state(exposures: list[Item]) -> tuple[dict[str, int], dict[str, set[str]]]:
    first: dict[str, int] = {}
    variants: dict[str, set[str]] = defaultdict(set)
    for row in exposures:
        first[row.unit] = min(first.get(row.unit, row.ts), row.ts)
        variants[row.unit].add(row.variant)
    return first, variants


def first_exposures(exposures: list[Item]) -> dict[str, Item]:
    """Each unit's first exposure: the earliest, then the smallest event_id."""
    first: dict[str, Item] = {}
    for row in exposures:
        if row.unit not in first or (row.ts, row.event_id) < (first[row.unit].ts, first[row.unit].event_id):
            first[row.unit] = row
    return first


def snapshot(exposures: list[Item], events: list[Item], metrics: Sequence[MetricDefinition],
             variants: Sequence[str], time_cutoff: int, received_cutoff: int, *, latest: bool = False,
             dimensions: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """Statistics of one snapshot; the latest one has quantile blocks and slices."""

    def known(row: Item) -> bool:
        return row.ts <= time_cutoff and row.received <= received_cutoff

    kept = first_copies([r for r in exposures if known(r)])
    first, seen = exposure_state(kept)
    by_unit: dict[str, list[Item]] = defaultdict(list)
    for event in first_copies([e for e in events if known(e)]):
        by_unit[event.unit].append(event)
    analysed = {unit: next(iter(vs)) for unit, vs in seen.items() if len(vs) == 1}
    if not latest:
        metrics = [metric for metric in metrics if metric.type != "quantile"]
    result = statistics(analysed, first, by_unit, metrics, variants)
    if latest and dimensions:
        result["slices"] = slices(analysed, first, by_unit, first_exposures(kept), metrics, variants, dimensions)
    return result


def statistics(analysed: dict[str, str], first: dict[str, int], by_unit: dict[str, list[Item]],
               metrics: Sequence[MetricDefinition], variants: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """Units and metric blocks over the analysed units given (unit -> variant)."""
    entries = []
    for metric in metrics:
        per_variant: dict[str, list[tuple[Decimal, Decimal, Decimal]]] = defaultdict(list)
        quantiles: dict[str, list[list[Decimal]]] = defaultdict(list)
        for unit in sorted(analysed):
            per_variant[analysed[unit]].append(unit_values(metric, first[unit], by_unit[unit]))
            if metric.type == "quantile":
                quantiles[analysed[unit]].append(quantile_values(metric, first[unit], by_unit[unit]))
        blocks = [variant_block(metric, key, per_variant[key]) for key in variants]
        if metric.type == "quantile":
            assert metric.quantile is not None
            for block in blocks:
                block["quantile"] = quantile_block(metric.quantile, quantiles[block["key"]])
        entries.append({"name": metric.name, "type": metric.type, "variants": blocks})
    units = {key: sum(1 for v in analysed.values() if v == key) for key in variants}
    return {"variants": {key: {"units": units[key]} for key in variants}, "metrics": entries}


def slices(analysed: dict[str, str], first: dict[str, int], by_unit: dict[str, list[Item]],
           first_rows: dict[str, Item], metrics: Sequence[MetricDefinition], variants: Sequence[str],
           dimensions: Sequence[str]) -> list[dict[str, Any]]:  # fmt: skip
    entries = []
    for dimension in dimensions:
        raw = {unit: dict(first_rows[unit].attributes).get(dimension) for unit in analysed}
        counts = Counter(v for v in raw.values() if v is not None and v not in (OTHER, MISSING))
        top = {value for value, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_VALUES]}
        labels = {unit: MISSING if v is None else v if v in top else OTHER for unit, v in raw.items()}
        found = sorted(
            set(labels.values()),
            key=lambda label: ({OTHER: 1, MISSING: 2}.get(label, 0), -list(labels.values()).count(label), label),
        )
        for label in found:
            members = {unit: variant for unit, variant in analysed.items() if labels[unit] == label}
            entries.append({"dimension": dimension, "value": label,
                            **statistics(members, first, by_unit, metrics, variants)})  # fmt: skip
    return entries


@dataclass(frozen=True)
class Frame:
    """The rows one as-of can see: the experiment's exposures and the metrics' events."""

    exposures: list[Item]
    events: list[Item]
    day0: int
    since: int


def frame_for(exposures: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], experiment: str,
              metrics: Sequence[MetricDefinition], as_of: int) -> Frame | None:  # fmt: skip
    names = {m.numerator_measure.event for m in metrics} | {m.denominator.event for m in metrics if m.denominator}
    mine = [r for r in items([e for e in exposures if e["experiment"] == experiment])
            if r.ts <= as_of and r.received <= as_of]  # fmt: skip
    if not mine:
        return None
    day0 = min(r.ts for r in mine) // DAY * DAY
    since = day0 - max(lookback_days(m) for m in metrics) * DAY
    relevant = [e for e in items(list(events)) if e.name in names and since <= e.ts <= as_of and e.received <= as_of]
    return Frame(mine, relevant, day0, since)


def used_events(frame: Frame, metrics: Sequence[MetricDefinition]) -> list[Item]:
    """Events counted inside some metric's window for an analysed unit (latest)."""
    first, seen = exposure_state(first_copies(frame.exposures))
    used = []
    for event in first_copies(frame.events):
        if event.unit not in first or len(seen[event.unit]) != 1:
            continue
        start = first[event.unit]
        for metric in metrics:
            window = None if metric.window_hours is None else round(metric.window_hours * HOUR)
            measures = [metric.numerator_measure, *([metric.denominator] if metric.denominator else [])]
            inside = event.ts >= start and (window is None or event.ts < start + window)
            if inside and any(m.event == event.name for m in measures):
                used.append(event)
                break
    return used


def data_quality(frame: Frame, metrics: Sequence[MetricDefinition], as_of: int, lateness: int,
                 late_threshold: int) -> dict[str, Any]:  # fmt: skip
    exposures = first_copies(frame.exposures)
    first, seen = exposure_state(exposures)
    events = first_copies(frame.events)
    start = min(first.values())
    exposed_rows = [e for e in frame.events if e.unit in first]
    used = used_events(frame, metrics)

    def after_freeze(event: Item) -> bool:
        day_end = event.ts // DAY * DAY + DAY
        return day_end + lateness <= as_of and event.received > day_end + lateness - 1

    def without_exposure(event: Item) -> bool:
        return event.ts >= start and event.unit not in first

    def before_exposure(event: Item) -> bool:
        return event.unit in first and start <= event.ts < first[event.unit]

    return {
        "exposures": len(exposures), "units": sum(1 for vs in seen.values() if len(vs) == 1),
        "duplicate_events": len(frame.exposures) - len(exposures)
        + len(exposed_rows) - len(first_copies(exposed_rows)),
        "multiple_variant_units": sum(1 for vs in seen.values() if len(vs) > 1),
        "events_without_exposure": sum(1 for e in events if without_exposure(e)),
        "late_events_included": sum(1 for e in used if e.received - e.ts > late_threshold),
        "late_after_freeze": sum(1 for e in used if after_freeze(e)),
        "events_before_exposure": sum(1 for e in events if before_exposure(e)),
        "watermark": text_of(max(r.received for r in [*frame.exposures, *frame.events])),
    }  # fmt: skip


def reference_results(
    exposures: Sequence[dict[str, Any]], events: Sequence[dict[str, Any]], *, experiment: str,
    metrics: Sequence[MetricDefinition], variants: Sequence[str], as_of: str, lateness_hours: float = 72,
    late_threshold_hours: float = 1, dimensions: Sequence[str] = (),
) -> dict[str, Any]:  # fmt: skip
    """The results document's statistics (latest, daily, data quality) by definition."""
    as_of_us, lateness = micros(as_of), round(lateness_hours * HOUR)
    frame = frame_for(exposures, events, experiment, metrics, as_of_us)
    if frame is None:
        return {"data_quality": None, "daily": []}
    latest = snapshot(frame.exposures, frame.events, metrics, variants, as_of_us, as_of_us, latest=True,
                      dimensions=dimensions)  # fmt: skip
    daily = []
    day = frame.day0
    while day <= as_of_us:
        end = day + DAY
        final = end + lateness <= as_of_us
        received_cutoff = end + lateness - 1 if final else as_of_us
        entry = snapshot(frame.exposures, frame.events, metrics, variants, min(end - 1, as_of_us), received_cutoff)
        date = (EPOCH + timedelta(microseconds=day)).date().isoformat()
        daily.append({"date": date, "final": final, **entry})
        day = end
    quality = data_quality(frame, metrics, as_of_us, lateness, round(late_threshold_hours * HOUR))
    return {**latest, "data_quality": quality, "daily": daily}
