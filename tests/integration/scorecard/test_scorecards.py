"""GET /v1/experiments/{key}/scorecard and the HTML pages, from hand-made results documents."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.processes import ServiceProcess
from tests.integration.scorecard.documents import SliceSpec, publish, simulated_results, sliced_results
from tests.support.services import ADMIN_KEY, SDK_KEY, client_for, create_running

PLAN = {"primary": ["conversion"], "secondary": ["revenue", "revenue_per_session"], "guardrails": ["latency_ms"]}


def running_with_results(admin: httpx.Client, results_dir: Path, **simulation: Any) -> str:
    key = create_running(admin, metrics=PLAN, name="Checkout <script>alert(1)</script>")["key"]
    publish(results_dir, simulated_results(key, **simulation))
    return key


def test_scorecard_shape_and_effect_direction(admin: httpx.Client, owner: httpx.Client, results_dir: Path) -> None:
    key = running_with_results(admin, results_dir, units_per_variant=20_000, lift=0.3)
    card = owner.get(f"/v1/experiments/{key}/scorecard").json()
    assert card["experiment"] == key and card["status"] == "running"
    assert card["srm"]["mismatch"] is False and card["srm"]["observed"] == {"control": 20_000, "treatment": 20_000}
    assert [m["name"] for m in card["metrics"]] == ["conversion", "revenue", "revenue_per_session", "latency_ms"]
    assert [m["role"] for m in card["metrics"]] == ["primary", "secondary", "secondary", "guardrail"]
    conversion = card["metrics"][0]["comparisons"][0]
    assert conversion["relative_effect"] > 0 and conversion["significant"] is True
    assert card["decision"]["verdict"] == "ship", card["decision"]
    revenue = card["metrics"][1]["comparisons"][0]
    assert revenue["cuped"]["applied"] is True and revenue["cuped"]["variance_reduction"] > 0.3
    assert card["data_quality"]["duplicate_events"] == 12
    assert len(card["metrics"][0]["timeline"]) == 5


def test_broken_assignment_fires_srm_and_invalidates(
    admin: httpx.Client, owner: httpx.Client, results_dir: Path
) -> None:
    key = running_with_results(admin, results_dir, counts={"control": 5000, "treatment": 5600}, lift=0.3)
    card = owner.get(f"/v1/experiments/{key}/scorecard").json()
    assert card["srm"]["mismatch"] is True and card["srm"]["p_value"] < 0.001
    assert card["decision"]["verdict"] == "invalid"
    assert any("sample ratio" in reason.lower() for reason in card["decision"]["reasons"])


def test_harmed_guardrail_means_dont_ship(admin: httpx.Client, owner: httpx.Client, results_dir: Path) -> None:
    key = create_running(admin, metrics={"primary": ["conversion"], "guardrails": ["latency_ms"]})["key"]
    document = simulated_results(key, units_per_variant=5000)
    latency = next(m for m in document["metrics"] if m["name"] == "latency_ms")
    treated = latency["variants"][1]
    n = treated["n"]
    shift = 20.0  # +10% latency: lower is better, so this is harm
    treated["sum_squares"] += 2 * shift * treated["sum"] + n * shift**2
    treated["sum"] += n * shift
    publish(results_dir, document)
    card = owner.get(f"/v1/experiments/{key}/scorecard").json()
    guardrail = card["metrics"][1]["guardrails"][0]
    assert guardrail["harmed"] is True
    assert card["decision"]["verdict"] == "dont_ship"


def test_missing_results_and_unknown_experiment_are_404(admin: httpx.Client, owner: httpx.Client) -> None:
    key = create_running(admin)["key"]
    assert "no results" in owner.get(f"/v1/experiments/{key}/scorecard").json()["detail"]
    assert owner.get("/v1/experiments/never-created/scorecard").status_code == 404
    assert owner.get("/v1/experiments/..%2F..%2Fetc/scorecard").status_code in (404, 422)


def test_scorecard_roles(scorecard: ServiceProcess, admin: httpx.Client, results_dir: Path, start_scorecard: Any,
                         redis_server: Any) -> None:  # fmt: skip
    key = running_with_results(admin, results_dir)
    path = f"/v1/experiments/{key}/scorecard"
    with client_for(scorecard.base_url, SDK_KEY) as sdk:
        assert sdk.get(path).status_code == 403
    with client_for(scorecard.base_url, None) as anonymous:
        assert anonymous.get(path).status_code == 401
    permissive = start_scorecard(redis_server.url, results_dir, ASSAY_SDK_CAN_READ_SCORECARDS="true")
    with client_for(permissive.base_url, SDK_KEY) as sdk:
        assert sdk.get(path).status_code == 200


@contextmanager
def sign_in(scorecard: ServiceProcess, key: str = ADMIN_KEY, target: str = "/experiments") -> Iterator[httpx.Client]:
    with httpx.Client(base_url=scorecard.base_url, follow_redirects=False) as client:
        response = client.post("/login", data={"key": key, "next": target})
        assert response.status_code == 303, response.text
        yield client


def test_pages_need_sign_in_and_set_a_strict_cookie(scorecard: ServiceProcess) -> None:
    with httpx.Client(base_url=scorecard.base_url, follow_redirects=False) as anonymous:
        redirect = anonymous.get("/experiments/some-key")
        assert redirect.status_code == 303 and redirect.headers["location"] == "/login?next=/experiments/some-key"
        refused = anonymous.post("/login", data={"key": SDK_KEY, "next": "/experiments"})
        assert refused.status_code == 401 and "not an admin key" in refused.text
        escaped = anonymous.post("/login", data={"key": ADMIN_KEY, "next": "https://evil.example/"})
        assert escaped.headers["location"] == "/experiments"
        cookie = escaped.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and ADMIN_KEY not in cookie
    forged = httpx.get(f"{scorecard.base_url}/experiments", cookies={"assay_session": "admin-x.9999999999.deadbeef"},
                       follow_redirects=False)  # fmt: skip
    assert forged.status_code == 303


def test_experiment_page_escapes_and_sends_csp(
    scorecard: ServiceProcess, admin: httpx.Client, results_dir: Path
) -> None:
    key = running_with_results(admin, results_dir, counts={"control": 5000, "treatment": 5600})
    with sign_in(scorecard) as browser:
        page = browser.get(f"/experiments/{key}")
        listing = browser.get("/experiments")
    assert page.status_code == 200 and listing.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    for html in (page.text, listing.text):
        assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert not re.search(r"https?://(?!127\.0\.0\.1)", html)  # nothing loaded from other hosts
        assert ' style="' not in html  # CSP forbids inline styles
    assert 'id="srm-banner" class="banner bad blocking"' in page.text
    assert page.text.count('class="metric-row') == 8  # 4 metrics x 2 variants
    assert page.text.count('class="forest"') == 4 and page.text.count('class="timeline"') == 3


def test_static_stylesheet_is_served(scorecard: ServiceProcess) -> None:
    css = httpx.get(f"{scorecard.base_url}/static/scorecard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/experiments/" + "x" * 500, "/experiments/%00", "/login?next=" + "a" * 10_000])
def test_pages_hostile_paths(scorecard: ServiceProcess, path: str) -> None:
    with sign_in(scorecard) as browser:
        response = browser.get(path)
    assert response.status_code < 500


def test_scorecard_slices_over_http(admin: httpx.Client, owner: httpx.Client, results_dir: Path) -> None:
    key = create_running(admin, metrics=PLAN, dimensions=["country"])["key"]
    slices = {"US": SliceSpec({"control": 6000, "treatment": 6000}, lift=-0.2),
              "DE": SliceSpec({"control": 4000, "treatment": 4000}, lift=0.9),
              "FR": SliceSpec({"control": 1000, "treatment": 800})}  # fmt: skip
    publish(results_dir, sliced_results(key, "country", slices))
    card = owner.get(f"/v1/experiments/{key}/scorecard").json()
    assert [(s["value"], s["srm"]["mismatch"]) for s in card["slices"]] == [("US", False), ("DE", False), ("FR", True)]
    assert card["slices"][0]["units"] == {"control": 6000, "treatment": 6000}
    assert [m["name"] for m in card["slices"][0]["metrics"]] == [m["name"] for m in card["metrics"]]
    assert card["slice_checks"]["correction"] == "holm"
    tags = [warning.split(":")[0] for warning in card["warnings"]]
    assert {"simpson", "slice mix", "slice srm"} <= set(tags) and tags[0] == "simpson"
    bh = owner.get(f"/v1/experiments/{key}/scorecard", params={"slice_correction": "bh"}).json()
    assert bh["slice_checks"]["correction"] == "bh"
    holm_p = [c["p_value"] for s in card["slices"] for m in s["metrics"] if m["corrected"] for c in m["comparisons"]]
    bh_p = [c["p_value"] for s in bh["slices"] for m in s["metrics"] if m["corrected"] for c in m["comparisons"]]
    assert all(b <= h for b, h in zip(bh_p, holm_p, strict=True))  # BH never adjusts more than Holm
    refused = owner.get(f"/v1/experiments/{key}/scorecard", params={"slice_correction": "sidak"})
    assert refused.status_code == 422 and "slice_correction" in refused.text
    readout = owner.get(f"/v1/experiments/{key}/readout").json()
    assert readout["trust"]["slice_srm"] == "failed" and "conversion" in readout["trust"]["simpson"]
    assert readout["caveats"][0].startswith("simpson:")
