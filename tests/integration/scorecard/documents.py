"""Hand-made results documents (the metrics job's output format) with known truth.

Per-unit data is simulated with numpy and reduced to sufficient statistics exactly as the
metrics job does, so scorecard tests do not need Spark. Documents are JSON objects that tests
may alter; `publish` holds them to the shared model (services/common/results.py) first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from services.common.catalog import load_catalog
from services.common.results import ResultsDocument

VARIANTS = ("control", "treatment")
# The shipped catalog's hashes: documents look computed under the current definitions.
CURRENT_HASHES = {metric.name: metric.definition_hash for metric in load_catalog().metrics}


def _block(values: np.ndarray, other: np.ndarray | None = None) -> dict[str, float]:
    block = {"sum": float(values.sum()), "sum_squares": float((values**2).sum())}
    if other is not None:
        block["sum_products"] = float((values * other).sum())
    return block


def _variant_stats(key: str, metric: np.ndarray, covariate: np.ndarray | None,
                   denominator: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    stats: dict[str, Any] = {"key": key, "n": int(metric.size), **_block(metric)}
    if covariate is not None:
        stats["covariate"] = _block(covariate, metric)
    if denominator is not None:
        stats["denominator"] = _block(denominator, metric)
    return stats


def _simulate_units(
    rng: np.random.Generator, n: int, lift: float, treated: bool, rate: float = 0.10
) -> dict[str, np.ndarray]:
    factor = 1 + lift if treated else 1.0
    pre_revenue = rng.gamma(2.0, 5.0, n)
    revenue = np.maximum(0.0, 0.8 * pre_revenue * factor + rng.normal(0, 4, n))
    sessions = rng.poisson(3, n) + 1.0
    return {
        "conversion": (rng.random(n) < rate * factor).astype(float),
        "pre_conversion": (rng.random(n) < 0.10).astype(float),
        "revenue": revenue, "pre_revenue": pre_revenue, "sessions": sessions,
        "latency_ms": rng.normal(200, 30, n),
    }  # fmt: skip


def _metrics_for(units: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    def per_variant(builder: Any) -> list[dict[str, Any]]:
        return [builder(key, units[key]) for key in units]

    def entry(name: str, kind: str, builder: Any, higher_is_better: bool = True) -> dict[str, Any]:
        return {"name": name, "type": kind, "definition_hash": CURRENT_HASHES[name],
                "higher_is_better": higher_is_better, "variants": per_variant(builder)}  # fmt: skip

    return [
        entry("conversion", "proportion", lambda k, u: _variant_stats(k, u["conversion"], u["pre_conversion"])),
        entry("revenue", "mean", lambda k, u: _variant_stats(k, u["revenue"], u["pre_revenue"])),
        entry("revenue_per_session", "ratio", lambda k, u: _variant_stats(k, u["revenue"], None, u["sessions"])),
        entry("latency_ms", "mean", lambda k, u: _variant_stats(k, u["latency_ms"], None), higher_is_better=False),
    ]


def simulated_results(
    key: str, units_per_variant: int = 5000, lift: float = 0.0, seed: int = 7,
    counts: dict[str, int] | None = None, days: int = 5,
) -> dict[str, Any]:  # fmt: skip
    """A results document; `counts` overrides units per variant (e.g. to break SRM)."""
    rng = np.random.default_rng(seed)
    sizes = counts or dict.fromkeys(VARIANTS, units_per_variant)
    units = {k: _simulate_units(rng, n, lift, k != "control") for k, n in sizes.items()}
    return _document(key, units, days)


def _document(key: str, units: dict[str, dict[str, np.ndarray]], days: int) -> dict[str, Any]:
    sizes = {k: int(u["revenue"].size) for k, u in units.items()}
    start = date(2026, 11, 15)
    daily = []
    for day in range(days):
        share = (day + 1) / days
        partial = {k: {name: arr[: max(2, int(arr.size * share))] for name, arr in u.items()} for k, u in units.items()}
        daily.append({"date": (start + timedelta(days=day)).isoformat(), "final": day < days - 3,
                      "variants": {k: {"units": int(v["revenue"].size)} for k, v in partial.items()},
                      "metrics": _metrics_for(partial)})  # fmt: skip
    total = sum(sizes.values())
    return {
        "experiment": key, "computed_at": "2026-11-20T06:00:00Z", "as_of": "2026-11-20T00:00:00Z",
        "catalog_version": "test-catalog", "first_exposure_date": start.isoformat(),
        "allowed_lateness_hours": 72.0, "late_threshold_hours": 1.0, "missing_metrics": [],
        "data_quality": {"exposures": total + 40, "units": total, "duplicate_events": 12,
                         "multiple_variant_units": 3, "events_without_exposure": 5, "late_events_included": 8,
                         "late_after_freeze": 1, "events_before_exposure": 2, "watermark": "2026-11-20T05:59:00Z"},
        "variants": {k: {"units": n} for k, n in sizes.items()},
        "metrics": _metrics_for(units), "daily": daily,
    }  # fmt: skip


def publish(results_dir: Path, document: dict[str, Any]) -> None:
    """Write `document` as the job would, after checking it is a results document (unknown fields refused)."""
    model = ResultsDocument.model_validate(document)
    target = results_dir / model.experiment / "latest.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(model.to_json())
    tmp.replace(target)


@dataclass(frozen=True)
class SliceSpec:
    """One slice value's units per variant, the treatment's relative lift there and the control's
    conversion rate."""

    counts: dict[str, int]
    lift: float = 0.0
    rate: float = 0.10


def sliced_results(key: str, dimension: str, slices: dict[str, SliceSpec], seed: int = 7,
                   days: int = 3) -> dict[str, Any]:  # fmt: skip
    """A results document whose units are the union of the slices' units: the overall statistics
    are the sums of the slices' (sufficient statistics add), as the job computes them."""
    rng = np.random.default_rng(seed)
    per_slice = {value: {k: _simulate_units(rng, n, spec.lift, k != "control", spec.rate)
                         for k, n in spec.counts.items()} for value, spec in slices.items()}  # fmt: skip
    variants = next(iter(slices.values())).counts
    overall = {k: {name: np.concatenate([units[k][name] for units in per_slice.values()])
                   for name in next(iter(per_slice.values()))[k]} for k in variants}  # fmt: skip
    document = _document(key, overall, days)
    document["dimensions"] = [dimension]
    document["slices"] = [{"dimension": dimension, "value": value,
                           "variants": {k: {"units": int(u["revenue"].size)} for k, u in units.items()},
                           "metrics": _metrics_for(units)} for value, units in per_slice.items()]  # fmt: skip
    return document
