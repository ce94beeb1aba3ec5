"""The governed catalog over HTTP: `/v1/metrics`, `/v1/metrics/{name}` (versions, experiments by
role), `/v1/kpi-tree` and the `/kpi-tree` and `/metrics/{name}` pages, with real services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from services.common.catalog import DEFAULT_CATALOG, load_catalog
from tests.integration.scorecard.signin import HOSTILE_NAME, assert_safe_page, sign_in
from tests.support.services import ADMIN_KEY, SDK_KEY, client_for, create_running, experiment_body

PATHS = ("/v1/metrics", "/v1/metrics/conversion", "/v1/kpi-tree")


def node(tree: dict[str, Any], name: str) -> dict[str, Any]:
    if tree["name"] == name:
        return tree
    for child in tree["children"]:
        found = node(child, name)
        if found:
            return found
    return {}


def test_metrics_list_shows_governance_and_usage(admin: httpx.Client, owner: httpx.Client) -> None:
    key = create_running(admin, metrics={"primary": ["conversion"], "guardrails": ["latency_ms"]})["key"]
    answer = owner.get("/v1/metrics")
    assert answer.status_code == 200
    metrics = {metric["name"]: metric for metric in answer.json()["metrics"]}
    assert metrics["weekly_revenue"]["north_star"] and metrics["weekly_revenue"]["format"] == "currency"
    conversion = metrics["conversion"]
    assert (conversion["owner"], conversion["status"], conversion["parent"]) == ("growth", "certified", "revenue")
    assert conversion["definition_hash"] == load_catalog().get("conversion").definition_hash  # type: ignore[union-attr]
    assert key in [e["key"] for e in conversion["experiments"]["primary"]]
    assert key in [e["key"] for e in metrics["latency_ms"]["experiments"]["guardrail"]]
    assert key not in [e["key"] for e in metrics["revenue"]["experiments"]["secondary"]]


def test_one_metric_with_its_experiments_by_role(admin: httpx.Client, owner: httpx.Client) -> None:
    plan = {"primary": ["revenue"], "secondary": ["conversion"], "guardrails": ["error_rate"]}
    key = create_running(admin, metrics=plan, name="Bigger basket")["key"]
    detail = owner.get("/v1/metrics/conversion").json()
    assert detail["kpi_path"] == ["conversion", "revenue", "weekly_revenue"]
    assert detail["definition"] == {"name": "conversion", "type": "proportion", "event": "purchase",
                                    "window_hours": 168.0, "cuped_lookback_days": 14}  # fmt: skip
    assert [v["current"] for v in detail["versions"]][-1] is True
    assert {"key": key, "name": "Bigger basket", "status": "running", "owner": ""} in detail["experiments"]["secondary"]
    assert key not in [e["key"] for e in detail["experiments"]["primary"]]
    assert owner.get("/v1/metrics/revenue").json()["children"] == ["conversion", "sessions", "revenue_per_session"]


def test_an_earlier_definition_is_listed_with_when_it_was_first_used(
    own_redis: RedisServer, results_dir: Path, start_scorecard: Any, tmp_path: Path
) -> None:
    shipped = DEFAULT_CATALOG.read_text()
    older = tmp_path / "older.yaml"
    older.write_text(
        shipped.replace("    window_hours: 168\n\n  - name: sessions", "    window_hours: 24\n\n  - name: sessions")
    )
    assert load_catalog(older).get("conversion").window_hours == 24  # type: ignore[union-attr]
    before = start_scorecard(own_redis.url, results_dir, ASSAY_METRICS_CATALOG=str(older))
    with client_for(before.base_url, ADMIN_KEY) as client:
        old_hash = client.get("/v1/metrics/conversion").json()["definition_hash"]
    before.stop()
    after = start_scorecard(own_redis.url, results_dir)
    with client_for(after.base_url, ADMIN_KEY) as client:
        detail = client.get("/v1/metrics/conversion").json()
    versions = detail["versions"]
    assert [v["definition_hash"] for v in versions] == [old_hash, detail["definition_hash"]]
    assert [v["current"] for v in versions] == [False, True]
    assert versions[0]["first_seen"] <= versions[1]["first_seen"]
    assert versions[0]["definition"]["window_hours"] == 24.0


def test_kpi_tree_from_the_north_star_down(admin: httpx.Client, owner: httpx.Client) -> None:
    running = create_running(admin, metrics={"primary": ["conversion"]}, name="Tree runner")["key"]
    draft = admin.post("/v1/experiments", json=experiment_body(metrics={"secondary": ["sessions"]})).json()["key"]
    tree = owner.get("/v1/kpi-tree").json()
    assert [root["name"] for root in tree["trees"]] == ["weekly_revenue"]
    root = tree["trees"][0]
    assert root["owner"] == "finance" and root["status"] == "certified" and root["north_star"]
    assert [child["name"] for child in root["children"]] == ["revenue"]
    conversion = node(root, "conversion")
    assert running in [e["key"] for e in conversion["experiments"]["running"]]
    assert draft in [e["key"] for e in node(root, "sessions")["experiments"]["draft"]]
    assert {m["name"] for m in tree["outside"]} == {"latency_ms", "page_load_p90", "error_rate"}


@pytest.mark.parametrize("path", PATHS)
def test_catalog_endpoints_need_an_admin_key(scorecard: ServiceProcess, path: str) -> None:
    with client_for(scorecard.base_url, SDK_KEY) as sdk:
        refused = sdk.get(path)
        assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    with client_for(scorecard.base_url, None) as anonymous:
        assert anonymous.get(path).status_code == 401


@pytest.mark.parametrize("name", ["nope", "%3Cscript%3E", "x" * 65])
def test_unknown_metrics_are_404_and_malformed_names_422(owner: httpx.Client, name: str) -> None:
    response = owner.get(f"/v1/metrics/{name}")
    if name == "nope":
        assert response.status_code == 404 and "has no metric 'nope'" in response.json()["detail"]
    else:
        assert response.status_code == 422 and "<script>" not in response.text


def test_kpi_tree_page_draws_the_tree_with_working_links(scorecard: ServiceProcess, admin: httpx.Client) -> None:
    key = create_running(admin, metrics={"primary": ["conversion"]}, name=HOSTILE_NAME)["key"]
    with sign_in(scorecard) as browser:
        html = assert_safe_page(browser.get("/kpi-tree"))
        assert html.count('<svg class="kpi-tree"') == 1
        for name in ("weekly_revenue", "revenue", "conversion", "sessions"):
            assert f'<a href="/metrics/{name}">' in html
        assert f'href="/experiments/{key}"' in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert 'id="node-conversion"' in html and 'href="#node-conversion"' in html
        metric = assert_safe_page(browser.get("/metrics/conversion"))
        assert "Definition versions" in metric and f'href="/experiments/{key}"' in metric
        assert 'href="/metrics/revenue"' in metric
        draft = assert_safe_page(browser.get("/metrics/revenue_per_session"))
        assert "This metric is a draft" in draft
        assert browser.get("/metrics/nope").status_code == 404
    with httpx.Client(base_url=scorecard.base_url, follow_redirects=False) as anonymous:
        for path in ("/kpi-tree", "/metrics/conversion"):
            redirect = anonymous.get(path)
            assert redirect.status_code == 303 and redirect.headers["location"] == f"/login?next={path}"
