"""Readouts over HTTP with real services: bottom line first, the KPI path, trust checks, caveats a
person can act on; JSON, Markdown and the page; roles, 404s, hostile names rendered inert."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploy.processes import ServiceProcess
from tests.integration.scorecard.documents import publish, simulated_results
from tests.integration.scorecard.signin import HOSTILE_NAME, assert_safe_page, sign_in
from tests.support.services import SDK_KEY, client_for, create_running

PLAN = {"primary": ["conversion"], "secondary": ["revenue", "revenue_per_session"], "guardrails": ["latency_ms"]}
# "raised conversion by 27.3% (95% CI 18.0% to 36.6%), from 10.1% to 12.8%"
EFFECT = re.compile(r"raised conversion by \d+\.\d% \(95% CI \d+\.\d% to \d+\.\d%\), from \d+\.\d% to \d+\.\d%")


def shipped(admin: httpx.Client, results_dir: Path, **fields: Any) -> str:
    body = {"metrics": PLAN, "name": "Green checkout button", "plan": {"planned_units_per_variant": 20_000}, **fields}
    key = create_running(admin, **body)["key"]
    publish(results_dir, simulated_results(key, units_per_variant=20_000, lift=0.3))
    return key


def test_a_winning_experiment_reads_ship_with_its_effect_in_the_metric_format(
    admin: httpx.Client, owner: httpx.Client, results_dir: Path
) -> None:
    key = shipped(admin, results_dir)
    readout = owner.get(f"/v1/experiments/{key}/readout").json()
    assert readout["decision"] == "ship"
    bottom = readout["bottom_line"]
    assert bottom.startswith("Ship: Green checkout button raised conversion by ")
    assert EFFECT.search(bottom) and bottom.endswith("; no guardrail was harmed.")
    assert "p =" not in bottom and "Welch" not in bottom  # no jargon up front
    assert readout["kpi_path"] == ["conversion", "revenue", "weekly_revenue"]
    trust = readout["trust"]
    assert trust["srm"] == "passed" and trust["definitions"] == "current" and trust["uncertified_primary"] == []
    assert trust["sample_size"] == {"planned_per_variant": 20_000, "reached_per_variant": 20_000, "reached": True}
    assert trust["plan_changed_after_start"] is False
    assert [g["metric"] for g in readout["guardrails"]] == ["latency_ms"]
    assert readout["guardrails"][0]["change"].endswith(" ms")  # duration_ms format
    assert [s["metric"] for s in readout["secondary"]] == ["revenue", "revenue_per_session"]
    assert "$" in readout["secondary"][0]["sentence"]  # currency format
    assert "Welch" in readout["method"] and "frozen" in readout["method"]


def test_an_srm_failure_reads_do_not_act(admin: httpx.Client, owner: httpx.Client, results_dir: Path) -> None:
    key = create_running(admin, metrics=PLAN)["key"]
    publish(results_dir, simulated_results(key, counts={"control": 5000, "treatment": 5600}, lift=0.3))
    readout = owner.get(f"/v1/experiments/{key}/readout").json()
    assert readout["decision"] == "invalid" and readout["trust"]["srm"] == "failed"
    assert readout["bottom_line"].startswith("Do not act on this result: the variants did not receive the share")
    assert readout["caveats"][0].startswith("the traffic split is off (sample ratio mismatch): check the assignment")


def test_flags_a_changed_plan_an_older_definition_a_draft_primary_and_an_early_look(
    admin: httpx.Client, owner: httpx.Client, results_dir: Path
) -> None:
    plan = {"primary": ["revenue_per_session"], "guardrails": ["latency_ms"]}  # a draft metric
    key = create_running(admin, metrics=plan, plan={"planned_units_per_variant": 100_000})["key"]
    changed = admin.patch(f"/v1/experiments/{key}", json={"metrics": {**plan, "primary": ["revenue_per_session",
                          "conversion"]}, "reason": "conversion was forgotten"})  # fmt: skip
    assert changed.status_code == 200, changed.text
    document = simulated_results(key, units_per_variant=5000, lift=0.0)
    for metric in document["metrics"]:
        if metric["name"] == "conversion":
            metric["definition_hash"] = "0123456789abcdef"  # computed under an older definition
    publish(results_dir, document)
    readout = owner.get(f"/v1/experiments/{key}/readout").json()
    trust = readout["trust"]
    assert trust["uncertified_primary"] == ["revenue_per_session"] and trust["definitions"] == "changed"
    assert trust["plan_changed_after_start"] is True and trust["early_look"] is True
    assert trust["sample_size"]["reached"] is False
    caveats = " | ".join(readout["caveats"])
    assert "conversion was computed under an older definition (0123456789abcdef" in caveats
    assert "primary metric revenue_per_session is a draft nobody has certified: ask its owner" in caveats
    assert "the primary metrics changed after the start" in caveats and "treat the result as exploratory" in caveats
    assert "only 5,000 of the planned 100,000 units per variant so far, without sequential testing" in caveats
    card = owner.get(f"/v1/experiments/{key}/scorecard").json()  # the scorecard says so too
    assert card["governance"]["uncertified_primary"] == ["revenue_per_session"]
    assert any("older definition" in warning for warning in card["warnings"])


def test_markdown_puts_the_bottom_line_first(admin: httpx.Client, owner: httpx.Client, results_dir: Path) -> None:
    key = shipped(admin, results_dir)
    answer = owner.get(f"/v1/experiments/{key}/readout", params={"format": "md"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/markdown")
    lines = answer.text.splitlines()
    assert lines[0] == f"# Green checkout button ({key})"
    assert lines[2].startswith("**Ship: Green checkout button raised conversion by ") and EFFECT.search(lines[2])
    assert "KPI path: conversion → revenue → weekly_revenue" in answer.text
    assert (
        answer.text.index("## Can we trust it?") < answer.text.index("## Guardrails") < answer.text.index("## Method")
    )


def test_readout_roles_and_404s(scorecard: ServiceProcess, admin: httpx.Client, owner: httpx.Client) -> None:
    no_results = create_running(admin, metrics=PLAN)["key"]
    missing = owner.get(f"/v1/experiments/{no_results}/readout")
    assert missing.status_code == 404 and "no results" in missing.json()["detail"]
    assert owner.get("/v1/experiments/no-such-experiment/readout").status_code == 404
    assert owner.get(f"/v1/experiments/{no_results}/readout", params={"format": "pdf"}).status_code == 422
    with client_for(scorecard.base_url, SDK_KEY) as sdk:
        assert sdk.get(f"/v1/experiments/{no_results}/readout").status_code == 403
    with client_for(scorecard.base_url, None) as anonymous:
        assert anonymous.get(f"/v1/experiments/{no_results}/readout").status_code == 401


def test_readout_page_leads_with_the_bottom_line_and_escapes_names(
    scorecard: ServiceProcess, admin: httpx.Client, owner: httpx.Client, results_dir: Path
) -> None:
    key = shipped(admin, results_dir, name=HOSTILE_NAME)
    with sign_in(scorecard) as browser:
        html = assert_safe_page(browser.get(f"/experiments/{key}/readout"))
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        order = [html.index(f'id="{section}"') for section in ("bottom-line", "trust", "guardrails", "secondary",
                                                               "caveats", "method")]  # fmt: skip
        assert order == sorted(order)
        assert 'href="/metrics/conversion"' in html and 'href="/metrics/weekly_revenue"' in html
        assert f'href="/experiments/{key}/readout"' in browser.get(f"/experiments/{key}").text
    with httpx.Client(base_url=scorecard.base_url, follow_redirects=False) as anonymous:
        redirect = anonymous.get(f"/experiments/{key}/readout")
        assert redirect.status_code == 303 and redirect.headers["location"] == f"/login?next=/experiments/{key}/readout"


@pytest.mark.parametrize("value", [0.1234, None])
def test_value_formats(value: float | None) -> None:
    from services.scorecard.readout import format_change, format_value

    expected = {"percent": "12.3%", "currency": "$0.12", "duration_ms": "0 ms", "number": "0.123"}
    for fmt, text in expected.items():
        assert format_value(value, fmt) == (text if value is not None else "n/a")
    assert format_change(-0.012, "percent") == "-1.2 pp" and format_change(12.4, "duration_ms") == "+12 ms"
    assert format_change(0.4, "currency") == "+$0.40"


def test_the_registered_mde_sets_the_sample_size_the_scorecard_asks_for(
    admin: httpx.Client, owner: httpx.Client, results_dir: Path
) -> None:
    needed = {}
    for mde in (0.05, 0.5):
        key = create_running(admin, metrics=PLAN, plan={"minimum_detectable_effect": mde})["key"]
        publish(results_dir, simulated_results(key, units_per_variant=2000))
        card = owner.get(f"/v1/experiments/{key}/scorecard").json()
        needed[mde] = card["metrics"][0]["required_units_per_variant"]
        assert card["analysis"]["minimum_detectable_effect"] == mde
    assert needed[0.5] < needed[0.05] / 50  # a 10x larger effect needs about 100x fewer units
