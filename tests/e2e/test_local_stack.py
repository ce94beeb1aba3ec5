"""The local stack as a user runs it: `python -m deploy.local up` (what `make up` runs) on
free ports, with the demo; an experiment created through the API; traffic through the SDK;
ingest and the Spark job; scorecards whose SRM verdict and effect direction match the
simulated truth; `up` again changes nothing; `down` leaves no process behind.

The tests share one stack (it takes minutes to start) and none of them stops it: the module
fixture runs `down` at teardown and fails there if any process is left."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import assay
import httpx
import pytest

from deploy.demo import lake_event_ids
from deploy.embedded import free_port
from tests.support.eventually import eventually

REPO = Path(__file__).resolve().parents[2]
ADMIN = {"Authorization": "Bearer dev-admin-key"}
PROCESSES = 7  # redis, broker, assignment, exposure, scorecard, ingest, the job


def recorded_pids(data_dir: Path) -> list[int]:
    """The processes `up` started, from the pid files it keeps."""
    return [int(json.loads(path.read_text())["pid"]) for path in sorted((data_dir / "pids").glob("*.json"))]


def still_running(pid: int) -> bool:
    state = Path(f"/proc/{pid}/stat")
    return state.exists() and state.read_text().split()[2] != "Z"


def down(runner: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*runner, "down"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One stack for the module, started with `up` and stopped with `down` at teardown, where
    `down` must leave none of the processes `up` started behind."""
    data_dir = tmp_path_factory.mktemp("stack")
    ports = {name: free_port() for name in ("REDIS", "BROKER", "ASSIGNMENT", "EXPOSURE", "SCORECARD", "METRICS")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    env.update({f"ASSAY_{name}_PORT": str(port) for name, port in ports.items()})
    env.update(ASSAY_DATA_DIR=str(data_dir), ASSAY_METRICS_JOB_EVERY="3600")
    runner = [sys.executable, "-m", "deploy.local"]
    first = subprocess.run([*runner, "up"], env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    if first.returncode != 0:
        down(runner, env)  # whatever did start
        pytest.fail(f"`up` failed:\n{first.stdout[-3000:]}{first.stderr[-3000:]}")
    yield {"env": env, "ports": ports, "data_dir": data_dir, "output": first.stdout, "runner": runner}

    pids = recorded_pids(data_dir)
    stopped = down(runner, env)
    assert stopped.returncode == 0, f"`down` failed:\n{stopped.stdout[-3000:]}{stopped.stderr[-3000:]}"
    assert len(pids) == PROCESSES, f"`up` recorded {len(pids)} processes, not {PROCESSES}: {pids}"
    left = [pid for pid in pids if still_running(pid)]
    assert not left, f"`down` left processes behind: {left}\n{stopped.stdout[-3000:]}"


def url(stack: dict[str, Any], service: str) -> str:
    return f"http://127.0.0.1:{stack['ports'][service]}"


def scorecard(stack: dict[str, Any], key: str) -> dict[str, Any]:
    response = httpx.get(f"{url(stack, 'SCORECARD')}/v1/experiments/{key}/scorecard", headers=ADMIN, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_demo_scorecards_tell_the_simulated_truth(stack: dict[str, Any]) -> None:
    assert "Seeding the demo" in stack["output"] and "Stop everything with: make down" in stack["output"]
    checkout, pricing = scorecard(stack, "checkout-button"), scorecard(stack, "pricing-page")
    assert checkout["srm"]["mismatch"] is False
    conversion = checkout["metrics"][0]["comparisons"][0]
    assert conversion["relative_effect"] > 0 and conversion["significant"] is True
    assert pricing["srm"]["mismatch"] is True and pricing["decision"]["verdict"] == "invalid"
    with httpx.Client(base_url=url(stack, "SCORECARD"), follow_redirects=True) as browser:
        browser.post("/login", data={"key": "dev-admin-key", "next": "/experiments/pricing-page"})
        page = browser.get("/experiments/pricing-page")
    assert page.status_code == 200 and 'id="srm-banner" class="banner bad blocking"' in page.text


def test_demo_fills_the_portfolio_and_the_kpi_tree(stack: dict[str, Any]) -> None:
    with httpx.Client(base_url=url(stack, "SCORECARD"), headers=ADMIN, timeout=30) as owner:
        portfolio = owner.get("/v1/portfolio").json()
        tree = owner.get("/v1/kpi-tree").json()
        readout = owner.get("/v1/experiments/checkout-button/readout").json()
    decisions = {row["key"]: row["decision"] for row in portfolio["experiments"]}
    assert decisions["checkout-button"] == "ship" and decisions["pricing-page"] == "invalid"
    assert decisions["onboarding-tips"] == "keep_running" and decisions["search-ranking"] is None
    assert readout["bottom_line"].startswith("Ship: Green checkout button raised conversion by ")
    conversion = next(node for node in portfolio["kpi_nodes"] if node["metric"] == "conversion")
    assert [effect["experiment"] for effect in conversion["shipped_effects"]] == ["checkout-button"]
    assert tree["trees"][0]["name"] == "weekly_revenue" and "Ship:" in stack["output"]


def test_experiment_through_api_and_sdk_to_scorecard(stack: dict[str, Any]) -> None:
    body = {"key": "e2e-signup", "name": "Shorter signup form", "metrics": {"primary": ["conversion"]},
            "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]}  # fmt: skip
    with httpx.Client(base_url=url(stack, "ASSIGNMENT"), headers=ADMIN, timeout=30) as admin:
        assert admin.post("/v1/experiments", json=body).status_code == 201
        assert admin.post("/v1/experiments/e2e-signup/status", json={"status": "running"}).status_code == 200
    rng = random.Random(5)
    client = assay.Client("dev-sdk-key", url(stack, "ASSIGNMENT"), url(stack, "EXPOSURE"), mode="local",
                          batch_size=500, flush_interval=0.2)  # fmt: skip
    with client:
        for i in range(3000):
            unit = f"e2e-{i}"
            variant = client.get_variant("e2e-signup", unit)
            if rng.random() < (0.2 if variant == "treatment" else 0.1):  # true +100% relative
                client.track("purchase", unit, value=10.0)
        assert client.flush(timeout=120)
        assert client.stats["sent"] == client.stats["queued"]
        events_sent = client.stats["sent"] - 3000
    lake = stack["data_dir"] / "lake"
    eventually(lambda: (len(lake_event_ids(lake, "assay.exposures", "e2e-")) >= 3000
                        and len(lake_event_ids(lake, "assay.events", "e2e-")) >= events_sent),
               timeout=120, interval=1, message="ingest did not land everything the SDK sent")  # fmt: skip
    job = [sys.executable, "-m", "services.metrics", "run", "--experiment", "e2e-signup"]
    done = subprocess.run(job, env=stack["env"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((stack["data_dir"] / "results" / "e2e-signup" / "latest.json").read_text())
    assert results["data_quality"]["exposures"] == 3000
    card = scorecard(stack, "e2e-signup")
    assert card["srm"]["mismatch"] is False
    comparison = card["metrics"][0]["comparisons"][0]
    assert comparison["relative_effect"] > 0 and comparison["significant"] is True


def test_sliced_experiment_flags_the_planted_slice_srm_on_that_slice_only(stack: dict[str, Any]) -> None:
    """dimensions [country, platform] through the SDK (local mode attaches the unit's values),
    the exposure service, ingest, the job and the scorecard: DE's app drops 35% of its
    treatment exposures, so the country=DE slice shows an SRM and no other country does."""
    body = {"key": "e2e-sliced", "name": "Sliced signup", "metrics": {"primary": ["conversion"]},
            "dimensions": ["country", "platform"],
            "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]}  # fmt: skip
    with httpx.Client(base_url=url(stack, "ASSIGNMENT"), headers=ADMIN, timeout=30) as admin:
        assert admin.post("/v1/experiments", json=body).status_code == 201
        assert admin.post("/v1/experiments/e2e-sliced/status", json={"status": "running"}).status_code == 200
    rng = random.Random(9)
    countries, platforms = ["US", "DE", "FR", "GB"], ["ios", "android", "web", "ipados", "tv", "watch"]
    client = assay.Client("dev-sdk-key", url(stack, "ASSIGNMENT"), url(stack, "EXPOSURE"), mode="local",
                          batch_size=500, flush_interval=0.2)  # fmt: skip
    config = assay.ExperimentConfig.model_validate(
        next(e for e in httpx.get(f"{url(stack, 'ASSIGNMENT')}/v1/config", timeout=30,
                                  headers={"Authorization": "Bearer dev-sdk-key"}).json()["experiments"]
             if e["key"] == "e2e-sliced")
    )  # fmt: skip
    logged = 0
    with client:
        for i in range(6000):
            unit = f"e2s-{i}"
            attributes = {"country": countries[i % 4], "platform": platforms[i // 4 % 6], "plan": "free"}
            variant = assay.evaluate(config, unit, attributes).variant
            treated_in_de = attributes["country"] == "DE" and variant == "treatment"
            if treated_in_de and rng.random() < 0.35:
                continue  # the DE app's bug: it never calls get_variant, so nothing is logged
            client.get_variant("e2e-sliced", unit, attributes)
            logged += 1
        assert client.flush(timeout=120)
    lake = stack["data_dir"] / "lake"
    eventually(lambda: len(lake_event_ids(lake, "assay.exposures", "e2s-")) >= logged, timeout=120, interval=1,
               message="ingest did not land every exposure the SDK sent")  # fmt: skip
    job = [sys.executable, "-m", "services.metrics", "run", "--experiment", "e2e-sliced"]
    registry = {"ASSAY_REDIS_URL": f"redis://127.0.0.1:{stack['ports']['REDIS']}/0"}  # dimensions come from it
    done = subprocess.run(job, env={**stack["env"], **registry}, cwd=REPO, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((stack["data_dir"] / "results" / "e2e-sliced" / "latest.json").read_text())
    assert results["dimensions"] == ["country", "platform"]
    by_slice = {(s["dimension"], s["value"]): s for s in results["slices"]}
    assert set(by_slice) == {("country", c) for c in countries} | {("platform", p) for p in platforms}
    assert sum(s["variants"]["control"]["units"] for (d, _), s in by_slice.items() if d == "country") == \
        results["variants"]["control"]["units"]  # fmt: skip
    card = scorecard(stack, "e2e-sliced")
    by_country = {s["value"]: s for s in card["slices"] if s["dimension"] == "country"}
    assert {value for value, s in by_country.items() if s["srm"]["mismatch"]} == {"DE"}
    # The platform slices each hold a sixth of DE's units: they inherit a diluted share of its
    # loss (any of them may cross the threshold by chance), so DE must stand out among all.
    others = [s["srm"]["p_value"] for s in card["slices"] if (s["dimension"], s["value"]) != ("country", "DE")]
    assert by_country["DE"]["srm"]["p_value"] < 1e-6 * min(others)
    assert any("DE" in warning for warning in card["warnings"])
    with httpx.Client(base_url=url(stack, "SCORECARD"), follow_redirects=True) as browser:
        browser.post("/login", data={"key": "dev-admin-key", "next": "/experiments/e2e-sliced"})
        page = browser.get("/experiments/e2e-sliced")
    assert page.status_code == 200
    country_table = page.text.split('id="slices-country"', 1)[1].split("</details>", 1)[0]
    rows = re.findall(r'<tr class="slice-row( srm-mismatch)?">\s*<th>([^<]+)</th>', country_table)
    assert sorted(value for flagged, value in rows if flagged) == ["DE"] and len(rows) == 4


def test_demo_slices_put_the_pricing_page_srm_on_android(stack: dict[str, Any]) -> None:
    pricing, checkout = scorecard(stack, "pricing-page"), scorecard(stack, "checkout-button")
    mismatched = {(s["dimension"], s["value"]) for s in pricing["slices"] if s["srm"]["mismatch"]}
    assert ("platform", "android") in mismatched
    assert not {slice_ for slice_ in mismatched if slice_[0] == "platform" and slice_[1] != "android"}
    assert not [s for s in checkout["slices"] if s["srm"]["mismatch"]]
    p90 = next(metric for metric in checkout["metrics"] if metric["name"] == "page_load_p90")
    assert p90["type"] == "quantile" and p90["comparisons"][0]["absolute_ci"] is not None


def test_up_again_changes_nothing(stack: dict[str, Any]) -> None:
    before = json.loads((stack["data_dir"] / "results" / "checkout-button" / "latest.json").read_text())
    again = subprocess.run([*stack["runner"], "up"], env=stack["env"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0 and "already seeded" in again.stdout
    after = json.loads((stack["data_dir"] / "results" / "checkout-button" / "latest.json").read_text())
    assert after["computed_at"] == before["computed_at"]
    assert len(recorded_pids(stack["data_dir"])) == PROCESSES
