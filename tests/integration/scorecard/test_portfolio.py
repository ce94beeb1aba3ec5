"""The portfolio over HTTP with real services: experiments by status and decision, KPI-tree nodes
with shipped effects, trust flags, `?since=`, Markdown and the page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from deploy.processes import ServiceProcess
from tests.integration.scorecard.documents import publish, simulated_results
from tests.integration.scorecard.signin import HOSTILE_NAME, assert_safe_page, sign_in
from tests.support.services import SDK_KEY, client_for, create_running, experiment_body

PLAN = {"primary": ["conversion"], "guardrails": ["latency_ms"]}


def seeded(admin: httpx.Client, results_dir: Path) -> dict[str, str]:
    ship = create_running(admin, metrics=PLAN, name="Portfolio winner")["key"]
    publish(results_dir, simulated_results(ship, units_per_variant=20_000, lift=0.3))
    broken = create_running(admin, metrics=PLAN, name="Portfolio broken split")["key"]
    publish(results_dir, simulated_results(broken, counts={"control": 5000, "treatment": 5600}))
    late = create_running(admin, metrics={"primary": ["sessions"]}, name="Portfolio overdue",
                          plan={"planned_end": "2026-01-01T00:00:00Z"})["key"]  # fmt: skip
    draft = admin.post("/v1/experiments", json=experiment_body(metrics={"primary": ["revenue_per_session"]}))
    return {"ship": ship, "invalid": broken, "late": late, "draft": draft.json()["key"]}


def row(portfolio: dict[str, Any], key: str) -> dict[str, Any]:
    return next(r for r in portfolio["experiments"] if r["key"] == key)


def test_portfolio_groups_decisions_nodes_and_trust_flags(
    admin: httpx.Client, owner: httpx.Client, results_dir: Path
) -> None:
    keys = seeded(admin, results_dir)
    portfolio = owner.get("/v1/portfolio").json()
    assert row(portfolio, keys["ship"])["decision"] == "ship"
    assert row(portfolio, keys["ship"])["bottom_line"].startswith("Ship: Portfolio winner raised conversion by")
    assert row(portfolio, keys["invalid"])["decision"] == "invalid"
    assert row(portfolio, keys["draft"])["status"] == "draft" and row(portfolio, keys["draft"])["decision"] is None
    assert portfolio["by_status"]["running"] >= 3 and portfolio["by_decision"]["ship"] >= 1
    conversion = next(node for node in portfolio["kpi_nodes"] if node["metric"] == "conversion")
    assert conversion["kpi_path"] == ["conversion", "revenue", "weekly_revenue"]
    assert {keys["ship"], keys["invalid"]} <= {item["key"] for item in conversion["experiments"]}
    shipped = [effect for effect in conversion["shipped_effects"] if effect["experiment"] == keys["ship"]]
    assert len(shipped) == 1 and shipped[0]["sentence"].startswith("raised conversion by ")
    trust = portfolio["trust"]
    assert keys["invalid"] in trust["srm_failures"] and keys["ship"] not in trust["srm_failures"]
    assert keys["late"] in trust["running_past_plan"] and keys["ship"] not in trust["running_past_plan"]


def test_since_lists_what_changed(admin: httpx.Client, owner: httpx.Client) -> None:
    before = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    key = create_running(admin, metrics=PLAN, name="Changed lately")["key"]
    recent = owner.get("/v1/portfolio", params={"since": before}).json()
    assert key in [c["key"] for c in recent["changed_since"]] and recent["since"]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert owner.get("/v1/portfolio", params={"since": future}).json()["changed_since"] == []
    assert owner.get("/v1/portfolio", params={"since": "last week"}).status_code == 422
    misspelt = owner.get("/v1/portfolio", params={"fromat": "md"})
    assert misspelt.status_code == 422 and "unknown query parameter 'fromat'" in misspelt.json()["detail"]


def test_portfolio_markdown_and_roles(scorecard: ServiceProcess, admin: httpx.Client, owner: httpx.Client,
                                      results_dir: Path) -> None:  # fmt: skip
    keys = seeded(admin, results_dir)
    answer = owner.get("/v1/portfolio", params={"format": "md"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/markdown")
    text = answer.text
    assert text.startswith("# Experiment portfolio\n\n**") and f"({keys['ship']}) | running | ship |" in text
    assert "## KPI tree nodes" in text and "Traffic split off (results invalid): " in text
    with client_for(scorecard.base_url, SDK_KEY) as sdk:
        assert sdk.get("/v1/portfolio").status_code == 403
    with client_for(scorecard.base_url, None) as anonymous:
        assert anonymous.get("/v1/portfolio").status_code == 401


def test_portfolio_page_links_to_readouts_and_escapes(
    scorecard: ServiceProcess, admin: httpx.Client, results_dir: Path
) -> None:
    keys = seeded(admin, results_dir)
    hostile = create_running(admin, metrics=PLAN, name=HOSTILE_NAME)["key"]
    publish(results_dir, simulated_results(hostile, units_per_variant=2000))
    with sign_in(scorecard) as browser:
        html = assert_safe_page(browser.get("/portfolio"))
        assert f'href="/experiments/{keys["ship"]}/readout"' in html and "&lt;script&gt;alert(1)" in html
        assert 'id="trust-flags"' in html and 'href="/metrics/conversion"' in html
        assert browser.get(f"/experiments/{keys['ship']}/readout").status_code == 200  # the link works
    with httpx.Client(base_url=scorecard.base_url, follow_redirects=False) as anonymous:
        assert anonymous.get("/portfolio").headers["location"] == "/login?next=/portfolio"
