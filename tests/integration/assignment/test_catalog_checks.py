"""Experiment writes are checked against the metric catalog: an unknown or deprecated metric is a
422 that says why; a draft (uncertified) metric is allowed (its results are flagged elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess
from tests.support.services import ADMIN_KEY, StartService, client_for, create_running, experiment_body

CATALOG = """
metrics:
  - {name: north, type: mean, event: purchase, value: value, owner: finance, north_star: true, status: certified}
  - {name: clicks, type: mean, event: click, owner: growth, parent: north, status: certified}
  - {name: taps, type: mean, event: tap, owner: growth, parent: north}
  - {name: old_clicks, type: mean, event: click_v1, owner: growth, status: deprecated}
"""


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer,
             start_assignment: StartService) -> ServiceProcess:  # fmt: skip
    path = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    path.write_text(CATALOG)
    return start_assignment(redis_server.url, ASSAY_METRICS_CATALOG=str(path))


@pytest.fixture
def owner(governed: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(governed.base_url, ADMIN_KEY) as client:
        yield client


def test_catalog_metrics_are_accepted_drafts_included(owner: httpx.Client) -> None:
    body = experiment_body(metrics={"primary": ["taps"], "secondary": ["clicks"], "guardrails": ["north"]})
    created = owner.post("/v1/experiments", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["metrics"]["primary"] == ["taps"]


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({"primary": ["nope"]}, "primary metric 'nope' is not in the metric catalog; use a catalog metric"),
        ({"secondary": ["clicks", "ghost"]}, "secondary metric 'ghost' is not in the metric catalog"),
        ({"guardrails": ["old_clicks"]}, "guardrail metric 'old_clicks' is deprecated; pick the metric that "
                                         "replaced it (ask its owner, growth)"),
        ({"primary": ["conversion"]}, "primary metric 'conversion' is not in the metric catalog"),  # not this one's
    ],
)  # fmt: skip
def test_unknown_or_deprecated_metrics_are_422_with_the_reason(
    owner: httpx.Client, metrics: dict[str, list[str]], reason: str
) -> None:
    body = experiment_body(metrics=metrics)
    response = owner.post("/v1/experiments", json=body)
    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert owner.get(f"/v1/experiments/{body['key']}").status_code == 404  # nothing was stored


def test_updates_are_checked_too(owner: httpx.Client) -> None:
    body = experiment_body(metrics={"primary": ["clicks"]})
    assert owner.post("/v1/experiments", json=body).status_code == 201
    refused = owner.patch(f"/v1/experiments/{body['key']}", json={"metrics": {"primary": ["old_clicks"]}})
    assert refused.status_code == 422 and "'old_clicks' is deprecated" in refused.json()["detail"]
    assert owner.get(f"/v1/experiments/{body['key']}").json()["metrics"]["primary"] == ["clicks"]
    renamed = owner.patch(f"/v1/experiments/{body['key']}", json={"name": "no metric change"})
    assert renamed.status_code == 200


def test_the_default_catalog_serves_the_shared_suite(admin: httpx.Client) -> None:
    """The session's service reads the shipped catalog: its metrics pass, others do not."""
    ok = admin.post("/v1/experiments", json=experiment_body(metrics={"primary": ["conversion"]}))
    assert ok.status_code == 201
    refused = admin.post("/v1/experiments", json=experiment_body(metrics={"primary": ["clicks"]}))
    assert refused.status_code == 422 and "'clicks' is not in the metric catalog" in refused.json()["detail"]


def test_a_bad_catalog_stops_the_service_at_start(tmp_path: Path) -> None:
    from services.assignment.app import create_app
    from services.assignment.settings import AssignmentSettings
    from services.common.catalog import CatalogError

    path = tmp_path / "catalog.yaml"
    path.write_text("metrics: [{name: a, type: mean, event: x, owner: o, parent: ghost}]\n")
    settings = AssignmentSettings(env="dev", metrics_catalog=path)
    with pytest.raises(CatalogError, match="names parent 'ghost', which the catalog does not define"):
        create_app(settings)


def test_starting_freezes_the_analysis_plan_with_a_hash_in_the_audit_log(admin: httpx.Client) -> None:
    plan = {
        "minimum_detectable_effect": 0.04,
        "planned_units_per_variant": 50000,
        "planned_end": "2026-12-20T00:00:00Z",
    }
    body = experiment_body(metrics={"primary": ["conversion"]}, plan=plan)
    assert admin.post("/v1/experiments", json=body).status_code == 201
    key = body["key"]
    assert admin.get(f"/v1/experiments/{key}").json()["frozen_plan"] is None  # a draft commits to nothing yet
    started = admin.post(f"/v1/experiments/{key}/status", json={"status": "running"}).json()
    frozen = started["frozen_plan"]
    assert frozen["primary"] == ["conversion"] and frozen["alpha"] == 0.05 and frozen["sequential"] is False
    assert frozen["minimum_detectable_effect"] == 0.04 and frozen["planned_units_per_variant"] == 50000
    assert frozen["planned_end"] == "2026-12-20T00:00:00Z" and len(frozen["hash"]) == 16
    audit = admin.get(f"/v1/experiments/{key}/audit").json()
    assert audit[-1]["changes"]["plan_frozen"]["hash"] == frozen["hash"]
    admin.post(f"/v1/experiments/{key}/status", json={"status": "paused"})
    resumed = admin.post(f"/v1/experiments/{key}/status", json={"status": "running"}).json()
    assert resumed["frozen_plan"] == frozen  # resuming does not re-freeze


@pytest.mark.parametrize(
    "change",
    [{"metrics": {"primary": ["revenue"]}}, {"analysis": {"alpha": 0.1}}],
)
def test_changing_primary_metrics_or_alpha_after_start_needs_a_reason(
    admin: httpx.Client, change: dict[str, object]
) -> None:
    key = create_running(admin, metrics={"primary": ["conversion"]})["key"]
    refused = admin.patch(f"/v1/experiments/{key}", json=change)
    assert refused.status_code == 422 and "needs a 'reason'" in refused.json()["detail"]
    assert admin.get(f"/v1/experiments/{key}").json()["plan_changes"] == []
    changed = admin.patch(f"/v1/experiments/{key}", json={**change, "reason": "the old metric was mislogged"})
    assert changed.status_code == 200, changed.text
    flagged = changed.json()["plan_changes"]
    assert len(flagged) == 1 and flagged[0]["reason"] == "the old metric was mislogged"
    assert flagged[0]["fields"] in (["the primary metrics"], ["alpha"])
    assert admin.get(f"/v1/experiments/{key}/audit").json()[-1]["reason"] == "the old metric was mislogged"


def test_drafts_change_their_plan_freely(admin: httpx.Client) -> None:
    body = experiment_body(metrics={"primary": ["conversion"]})
    assert admin.post("/v1/experiments", json=body).status_code == 201
    changed = admin.patch(f"/v1/experiments/{body['key']}", json={"metrics": {"primary": ["revenue"]}})
    assert changed.status_code == 200 and changed.json()["plan_changes"] == []
