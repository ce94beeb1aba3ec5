"""The end-to-end flow through public interfaces only: the admin API creates and starts an
experiment, `/v1/assign/batch` assigns, the Python SDK (`assay.Client`) logs exposures and
events, the metrics job runs in its container, the scorecard's JSON and HTML are checked
against what was sent."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from assay import Client

from deploy.compose_test.compose import Compose

EXPERIMENT = "compose-e2e"
VARIANTS = ("control", "treatment")
CONVERSION_PER_TEN = {"control": 2, "treatment": 3}  # unit i converts when i % 10 < this
TIMESTAMP_FIELD = re.compile(rb'"(\w*_at)": ?"[^"]*"')


@dataclass(frozen=True)
class Stack:
    assignment: str
    exposure: tuple[str, ...]
    scorecard: str
    admin_key: str
    sdk_key: str

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key if role == 'admin' else self.sdk_key}"}


@dataclass(frozen=True)
class Sent:
    units: dict[str, int]  # per variant
    conversions: dict[str, int]
    exposures: int
    events: int


def create_and_start(stack: Stack) -> None:
    body = {"key": EXPERIMENT, "name": "compose end to end", "owner": "ci",
            "hypothesis": "the deployment computes what was sent",
            "variants": [{"key": key, "weight": 0.5} for key in VARIANTS],
            "metrics": {"primary": ["conversion"], "secondary": ["revenue"]}}  # fmt: skip
    with httpx.Client(base_url=stack.assignment, headers=stack.headers("admin"), timeout=30) as admin:
        created = admin.post("/v1/experiments", json=body)
        assert created.status_code == 201, created.text
        started = admin.post(f"/v1/experiments/{EXPERIMENT}/status", json={"status": "running", "reason": "ci"})
        assert started.status_code == 200 and started.json()["status"] == "running", started.text


def assign_batch(stack: Stack, units: list[str]) -> dict[str, str]:
    variants: dict[str, str] = {}
    with httpx.Client(base_url=stack.assignment, headers=stack.headers("sdk"), timeout=60) as sdk:
        for start in range(0, len(units), 1000):
            chunk = [{"unit_id": unit, "attributes": {}} for unit in units[start : start + 1000]]
            answer = sdk.post("/v1/assign/batch", json={"units": chunk, "experiments": [EXPERIMENT]})
            assert answer.status_code == 200, answer.text
            for result in answer.json()["results"]:
                variants[result["unit_id"]] = result["assignments"][EXPERIMENT]["variant"]
    assert set(variants.values()) == set(VARIANTS), f"both variants must be assigned: {set(variants.values())}"
    return variants


def converts(unit: str, variant: str) -> bool:
    return int(unit.rsplit("-", 1)[1]) % 10 < CONVERSION_PER_TEN[variant]


def send_through_sdk(stack: Stack, variants: dict[str, str]) -> Sent:
    """Exposures by `get_variant` (sticky: the batch's answer), then one purchase per converting
    unit (whole-number values, so sums are exact whatever order Spark adds them in)."""
    units = dict.fromkeys(VARIANTS, 0)
    conversions = dict.fromkeys(VARIANTS, 0)
    with Client(stack.sdk_key, stack.assignment, stack.exposure[0], timeout=10, batch_size=500) as client:
        for unit, variant in variants.items():
            assert client.get_variant(EXPERIMENT, unit) == variant, f"{unit}: not sticky"
            units[variant] += 1
        for unit, variant in variants.items():
            if converts(unit, variant):
                assert client.track("purchase", unit, value=float(10 + int(unit.rsplit("-", 1)[1]) % 3))
                conversions[variant] += 1
        assert client.flush(timeout=120), f"the SDK could not deliver everything: {client.stats}"
        stats = client.stats
    assert stats.get("exposures_logged") == len(variants), stats
    return Sent(units, conversions, exposures=len(variants), events=sum(conversions.values()))


def lake_counts(compose: Compose, prefix: str, service: str = "metrics-ingest") -> dict[str, list[int]]:
    output = compose.exec(service, "python", "-m", "deploy.compose_test.lake_count", prefix)
    return json.loads(output.strip().splitlines()[-1])


def wait_for_lake(compose: Compose, prefix: str, exposures: int, events: int, timeout: float = 300) -> dict[str, Any]:
    """Until the lake holds `exposures` and `events` distinct ids for the prefix's units."""
    deadline, counts = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        counts = lake_counts(compose, prefix)
        if counts["assay.exposures"][1] >= exposures and counts["assay.events"][1] >= events:
            return counts
        time.sleep(3)
    raise TimeoutError(f"ingest did not land {exposures} exposures / {events} events in {timeout:.0f}s: {counts}")


def run_job(compose: Compose, as_of: str) -> bytes:
    """The metrics job in the scheduler's container (its Spark master), then its document."""
    compose.exec("metrics-scheduler", "python", "-m", "services.metrics", "run", "--experiment", EXPERIMENT,
                 "--as-of", as_of, timeout=1200)  # fmt: skip
    document = compose.exec("metrics-scheduler", "cat", f"/data/results/{EXPERIMENT}/latest.json")
    return document.encode()


def without_timestamps(document: bytes) -> bytes:
    """The document with every `*_at` value blanked: what must match byte for byte."""
    return TIMESTAMP_FIELD.sub(rb'"\1": "<timestamp>"', document)


def as_of_now() -> str:
    """The next whole second, once it has passed: an as-of after the receipt of everything
    sent so far. (The current second, truncated, could precede a batch received earlier in
    that same second, and the job would rightly leave the batch out: a run once counted no
    conversions because every event had arrived a fraction of a second before as-of.)"""
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    time.sleep(max((moment - datetime.now(UTC)).total_seconds(), 0) + 0.01)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_document(document: bytes, sent: Sent) -> None:
    """The results document's sufficient statistics are exactly what was sent."""
    parsed = json.loads(document)
    assert {key: value["units"] for key, value in parsed["variants"].items()} == sent.units, parsed["variants"]
    conversion = next(metric for metric in parsed["metrics"] if metric["name"] == "conversion")
    sums = {variant["key"]: (variant["n"], variant["sum"]) for variant in conversion["variants"]}
    expected = {key: (sent.units[key], float(sent.conversions[key])) for key in VARIANTS}
    assert sums == expected, (sums, parsed["as_of"], parsed["data_quality"])


def check_scorecard(stack: Stack, sent: Sent) -> dict[str, float]:
    """Units per variant (SRM's observed counts) and conversion means as sent; returns the means."""
    with httpx.Client(base_url=stack.scorecard, headers=stack.headers("admin"), timeout=30) as admin:
        answer = admin.get(f"/v1/experiments/{EXPERIMENT}/scorecard")
    assert answer.status_code == 200, answer.text
    card = answer.json()
    assert card["srm"]["observed"] == sent.units and not card["srm"]["mismatch"], card["srm"]
    conversion = next(metric for metric in card["metrics"] if metric["name"] == "conversion")
    means = {variant["key"]: variant["mean"] for variant in conversion["variants"]}
    for key in VARIANTS:
        expected = sent.conversions[key] / sent.units[key]
        assert abs(means[key] - expected) < 1e-12, (key, means[key], expected)
    return means


def check_page(stack: Stack) -> int:
    """Sign in with the admin key through the form, then the experiment's HTML page renders."""
    with httpx.Client(base_url=stack.scorecard, timeout=30, follow_redirects=True) as browser:
        signed_in = browser.post("/login", data={"key": stack.admin_key, "next": f"/experiments/{EXPERIMENT}"})
        assert signed_in.status_code == 200, signed_in.text[:500]
        assert str(signed_in.url).endswith(f"/experiments/{EXPERIMENT}"), f"not signed in: {signed_in.url}"
        page = signed_in.text
    assert "<html" in page.lower() and "compose end to end" in page and "conversion" in page, page[:500]
    return len(page)
