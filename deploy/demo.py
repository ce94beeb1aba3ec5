"""`make demo` (also run by `make up`): a simulated product, driven through the real APIs.

Three running experiments, each with an analysis plan frozen when it starts, so the portfolio
shows one of each decision:
- `checkout-button` (ship): in treatment each session is 30% more likely to end in a purchase
  and each purchase is 30% larger; spending follows each user's pre-period engagement (so CUPED
  visibly narrows the revenue interval);
- `pricing-page` (invalid): no effect, but the Android client drops 60% of the treatment's
  exposures, so the sample-ratio-mismatch banner fires, and the platform slices show the
  mismatch on android alone;
- `onboarding-tips` (keep running): a small lift on few users, far from its planned sample.
And one draft (`search-ranking`) whose primary metric is itself still a draft in the catalog.
The shipped catalog (services/common/catalog.yaml) is the KPI tree they hang on.

Units get their variants from the assignment API (sticky, real bucketing); exposures and
events go through the exposure API with their own (past) timestamps: the last two days for the
experiment, the 14 days before for the pre-period. Event ids are derived from the seed, so
running the demo twice adds nothing new (the metrics job deduplicates by `event_id`). Then
the Spark job runs and a short scorecard summary is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from assay.timefmt import format_rfc3339

from deploy.stack import SERVICES, layout_from_env
from services.common.topics import EVENTS_TOPIC, EXPOSURES_TOPIC

ADMIN, SDK = "dev-admin-key", "dev-sdk-key"
SEED = 20261122
NAMESPACE = uuid.UUID("6f0d5b7e-2b8e-4f8a-9f57-0c3a3e2a9d11")
VARIANTS = [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]
EXPERIMENTS: list[dict[str, Any]] = [
    {"key": "checkout-button", "name": "Green checkout button", "owner": "payments",
     "hypothesis": "A green button makes checkout more visible and lifts conversion",
     "variants": VARIANTS, "targeting": [{"attribute": "country", "op": "in", "value": ["US", "CA", "GB", "DE"]}],
     "metrics": {"primary": ["conversion"], "secondary": ["revenue", "revenue_per_session"],
                 "guardrails": ["latency_ms", "page_load_p90"]},
     "dimensions": ["country", "platform"],
     "plan": {"minimum_detectable_effect": 0.2, "planned_units_per_variant": 1200}},
    {"key": "pricing-page", "name": "Annual plan first", "owner": "growth",
     "hypothesis": "Showing the annual plan first lifts conversion (its Android client drops exposures: SRM demo)",
     "variants": VARIANTS, "metrics": {"primary": ["conversion"], "secondary": ["revenue"]},
     "dimensions": ["country", "platform"],
     "plan": {"planned_units_per_variant": 1200}},
    {"key": "onboarding-tips", "name": "Onboarding tips", "owner": "engagement",
     "hypothesis": "Tips on the first visit bring users back for more sessions and purchases",
     "variants": VARIANTS, "metrics": {"primary": ["conversion"], "secondary": ["sessions"],
                                       "guardrails": ["latency_ms"]},
     "plan": {"minimum_detectable_effect": 0.05, "planned_units_per_variant": 20000}},
]  # fmt: skip
# Defined but not started: it shows on the KPI tree as a draft, with a draft primary metric.
DRAFTS: list[dict[str, Any]] = [
    {"key": "search-ranking", "name": "Personalised search ranking", "owner": "search",
     "hypothesis": "Ranking by past purchases raises revenue per session",
     "variants": VARIANTS, "metrics": {"primary": ["revenue_per_session"], "secondary": ["conversion"]}},
]  # fmt: skip


@dataclass(frozen=True)
class Plan:
    units: int
    lift: float  # relative: purchase probability per session and purchase size in treatment
    lost_exposures: float  # share of treatment exposures a buggy client never sends
    buggy_platform: str | None = None  # the client that loses them (None: every client)


PLATFORMS, PLATFORM_SHARES = ["ios", "android", "web"], [0.4, 0.35, 0.25]
SIMULATION = {"checkout-button": Plan(units=4000, lift=0.3, lost_exposures=0.0),
              "pricing-page": Plan(units=3000, lift=0.0, lost_exposures=0.6, buggy_platform="android"),
              "onboarding-tips": Plan(units=600, lift=0.05, lost_exposures=0.0)}  # fmt: skip


def progress(message: str) -> None:
    print(f"  · {message}", flush=True)


def live(message: str) -> None:
    """A line that redraws itself on a terminal. Elsewhere (logs, CI) every frame would stay as a
    line of its own, so nothing is printed there: the step's `progress` line says what happened."""
    if sys.stdout.isatty():
        print(f"\r  · {message}", end="", flush=True)


def end_live() -> None:
    """Erase the `live` line, so the next line starts clean (a no-op where `live` printed nothing)."""
    if sys.stdout.isatty():
        print("\r" + " " * 60 + "\r", end="", flush=True)


def ensure_experiments(client: httpx.Client) -> None:
    """Create what is missing and start the drafts (which freezes their analysis plans)."""
    for body in DRAFTS:
        if client.get(f"/v1/experiments/{body['key']}").status_code == 404:
            client.post("/v1/experiments", json=body).raise_for_status()
    for body in EXPERIMENTS:
        if client.get(f"/v1/experiments/{body['key']}").status_code == 404:
            client.post("/v1/experiments", json=body).raise_for_status()
        if client.get(f"/v1/experiments/{body['key']}").json()["status"] == "draft":
            client.post(f"/v1/experiments/{body['key']}/status", json={"status": "running", "reason": "demo"})


def assign(client: httpx.Client, key: str, units: list[str], countries: list[str]) -> dict[str, str]:
    variants: dict[str, str] = {}
    for start in range(0, len(units), 1000):
        chunk = [{"unit_id": u, "attributes": {"country": c}}
                 for u, c in zip(units[start:start + 1000], countries[start:start + 1000], strict=True)]  # fmt: skip
        answer = client.post("/v1/assign/batch", json={"units": chunk, "experiments": [key]})
        answer.raise_for_status()
        for result in answer.json()["results"]:
            variant = result["assignments"][key]["variant"]
            if variant:
                variants[result["unit_id"]] = variant
    return variants


def _event(key: str, unit: str, index: int, name: str, at: datetime, value: float | None) -> dict[str, Any]:
    event_id = str(uuid.uuid5(NAMESPACE, f"{key}/{unit}/{index}"))
    return {"event_id": event_id, "name": name, "unit_id": unit, "timestamp": format_rfc3339(at),
            "value": None if value is None else round(value, 2), "properties": {"source": "demo"}}  # fmt: skip


def unit_events(rng: np.random.Generator, key: str, unit: str, exposed: datetime, now: datetime,
                treated: bool, lift: float) -> list[dict[str, Any]]:  # fmt: skip
    """Pre-period (14 days) and post-exposure activity driven by one engagement level."""
    engagement = rng.gamma(2.0, 0.5)
    events: list[dict[str, Any]] = []
    periods = ((exposed - timedelta(days=14), exposed, 1.0, 0.4), (exposed, now, 1.0 + lift if treated else 1.0, 2.0))
    for begin, end, factor, sessions_per_day in periods:
        span = (end - begin).total_seconds()
        for _ in range(rng.poisson(engagement * span / 86_400 * sessions_per_day)):
            at = begin + timedelta(seconds=float(rng.uniform(0, span)))
            events.append(_event(key, unit, len(events), "session_start", at, None))
            events.append(_event(key, unit, len(events), "page_load", at, float(rng.normal(320, 60))))
            if rng.random() < min(0.9, 0.06 * engagement * factor):
                spend = 25 * engagement * factor * float(rng.lognormal(0, 0.3))
                events.append(_event(key, unit, len(events), "purchase", at + timedelta(minutes=3), spend))
    return events


def send(client: httpx.Client, kind: str, items: list[dict[str, Any]]) -> int:
    accepted = 0
    for start in range(0, len(items), 1000):
        answer = client.post(f"/v1/{kind}", json={kind: items[start : start + 1000]})
        answer.raise_for_status()
        accepted += answer.json()["accepted"]
        live(f"sending {kind}: {min(start + 1000, len(items))}/{len(items)}")
    end_live()
    return accepted


def simulate(assignment: httpx.Client, exposure: httpx.Client, key: str, now: datetime) -> tuple[int, int]:
    plan = SIMULATION[key]
    rng = np.random.default_rng(SEED + len(key))
    units = [f"{key[:3]}-user-{i}" for i in range(plan.units)]
    countries = [
        str(c) for c in rng.choice(["US", "CA", "GB", "DE", "FR"], size=len(units), p=[0.5, 0.1, 0.15, 0.15, 0.1])
    ]
    # Platforms come from a stream of their own, so adding them left every other draw as it was.
    platform_rng = np.random.default_rng(SEED + 1 + len(key))
    drawn = platform_rng.choice(PLATFORMS, size=len(units), p=PLATFORM_SHARES)
    platforms = dict(zip(units, (str(p) for p in drawn), strict=True))
    country_of = dict(zip(units, countries, strict=True))
    variants = assign(assignment, key, units, countries)
    sliced = "dimensions" in next(body for body in EXPERIMENTS if body["key"] == key)
    exposures, events = [], []
    for unit, variant in variants.items():
        exposed = now - timedelta(hours=float(rng.uniform(1, 46)))
        buggy = plan.buggy_platform in (None, platforms[unit])
        if not (variant == "treatment" and buggy and rng.random() < plan.lost_exposures):
            record: dict[str, Any] = {
                "event_id": str(uuid.uuid5(NAMESPACE, f"{key}/{unit}/exposure")), "experiment": key,
                "variant": variant, "unit_id": unit, "timestamp": format_rfc3339(exposed),
            }  # fmt: skip
            if sliced:  # what the SDK attaches: the unit's values of the experiment's dimensions
                record["attributes"] = {"country": country_of[unit], "platform": platforms[unit]}
            exposures.append(record)
        events += unit_events(rng, key, unit, exposed, now, variant == "treatment", plan.lift)
    accepted = send(exposure, "exposures", exposures), send(exposure, "events", events)
    progress(f"{key}: {len(variants)} units assigned, {accepted[0]} exposures and {accepted[1]} events accepted")
    return accepted


def lake_event_ids(lake: Any, topic: str, prefix: str) -> set[str]:
    import pyarrow.dataset as ds

    root = lake / topic
    if not root.exists():
        return set()
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table(columns=["event_id", "unit_id"])
    ids, units = table.column("event_id").to_pylist(), table.column("unit_id").to_pylist()
    return {event_id for event_id, unit in zip(ids, units, strict=True) if unit.startswith(prefix)}


def wait_for_lake(lake: Any, expected: dict[str, int], timeout: float = 180) -> None:
    """Until ingest has landed every accepted exposure and event of the demo."""
    deadline = time.monotonic() + timeout
    while True:
        landed = {topic: sum(len(lake_event_ids(lake, topic, key[:3] + "-user-")) for key in SIMULATION)
                  for topic in expected}  # fmt: skip
        if all(landed[topic] >= count for topic, count in expected.items()):
            progress(f"ingest landed {landed[EXPOSURES_TOPIC]} exposures and {landed[EVENTS_TOPIC]} events")
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"ingest did not land the demo within {timeout:.0f}s: {landed} of {expected}")
        time.sleep(2)


def run_job(env: dict[str, str]) -> None:
    """The Spark job over both experiments, with a progress line while it runs."""
    command = [sys.executable, "-m", "services.metrics", "run", "--experiments", ",".join(SIMULATION)]
    started = time.monotonic()
    # Output goes to a file, not a pipe: a pipe nobody drains would stall the job.
    with tempfile.TemporaryFile("w+") as log, subprocess.Popen(command, env=env, stdout=log, stderr=log) as job:
        while job.poll() is None:
            live(f"Spark metrics job running: {time.monotonic() - started:4.0f} s")
            time.sleep(1)
        log.seek(0)
        output = log.read()
    end_live()
    progress(f"Spark metrics job done in {time.monotonic() - started:.0f} s")
    if job.returncode != 0:
        raise SystemExit(f"the metrics job failed:\n{output[-3000:]}")


def summarize(scorecard_url: str) -> None:
    with httpx.Client(base_url=scorecard_url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as client:
        for key in SIMULATION:
            card = client.get(f"/v1/experiments/{key}/scorecard").json()
            srm = card["srm"]
            print(f"\n  {key}: verdict {card['decision']['verdict'].upper()}"
                  f"  (SRM p = {srm['p_value']:.2g}{', MISMATCH' if srm['mismatch'] else ''})")  # fmt: skip
            for metric in card["metrics"]:
                for comparison in metric["comparisons"]:
                    effect, ci = comparison["relative_effect"], comparison["relative_ci"]
                    cuped = comparison["cuped"]
                    reduction = f", CUPED -{cuped['variance_reduction']:.0%} variance" if cuped["applied"] else ""
                    if effect is not None and ci and None not in ci:
                        interval = f"[{ci[0]:+.2%}, {ci[1]:+.2%}]"
                        print(f"    {metric['role']:<9} {metric['name']:<20} {effect:+7.2%} {interval}"
                              f"  p={comparison['p_value']:.3g}{reduction}")  # fmt: skip
            readout = client.get(f"/v1/experiments/{key}/readout").json()
            print(f"    {readout['bottom_line']}")
            print(f"    page: {scorecard_url}/experiments/{key}   readout: {scorecard_url}/experiments/{key}/readout")
        print(f"\n  KPI tree: {scorecard_url}/kpi-tree   portfolio: {scorecard_url}/portfolio")


def run_demo(urls: dict[str, str], data_dir: Any, env: dict[str, str]) -> None:
    print("\nSeeding the demo (simulated traffic through the real APIs):", flush=True)
    now = datetime.now(UTC)
    auth = {"admin": {"Authorization": f"Bearer {ADMIN}"}, "sdk": {"Authorization": f"Bearer {SDK}"}}
    with (httpx.Client(base_url=urls["assignment"], headers=auth["admin"], timeout=60) as admin,
          httpx.Client(base_url=urls["assignment"], headers=auth["sdk"], timeout=60) as assignment,
          httpx.Client(base_url=urls["exposure"], headers=auth["sdk"], timeout=60) as exposure):  # fmt: skip
        ensure_experiments(admin)
        sent = [simulate(assignment, exposure, key, now) for key in SIMULATION]
    expected = {EXPOSURES_TOPIC: sum(s[0] for s in sent), EVENTS_TOPIC: sum(s[1] for s in sent)}
    wait_for_lake(data_dir / "lake", expected)
    run_job(env)
    summarize(urls["scorecard"])


def has_results(data_dir: Any) -> bool:
    return all((data_dir / "results" / key / "latest.json").exists() for key in SIMULATION)


def main() -> None:
    """`python -m deploy.demo`: (re)run the demo against the stack `make up` started."""
    layout = layout_from_env()
    urls = {name: f"http://127.0.0.1:{os.environ.get(var, str(port))}" for name, _, var, port in SERVICES}
    redis_url = os.environ.get("ASSAY_REDIS_URL", f"redis://127.0.0.1:{os.environ.get('ASSAY_REDIS_PORT', '6379')}/0")
    env = {**os.environ, "ASSAY_ENV": "dev", "ASSAY_DATA_DIR": str(layout.data_dir), "ASSAY_REDIS_URL": redis_url}
    run_demo(urls, Path(layout.data_dir), env)


if __name__ == "__main__":
    main()
