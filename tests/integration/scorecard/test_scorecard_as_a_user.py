"""Scorecard fixes found reading it as a user: a ratio metric shows its ratio, and an experiment
without results (or an unknown one) gets an HTML page, not a JSON error body."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from deploy.processes import ServiceProcess
from tests.integration.scorecard.documents import publish, simulated_results
from tests.integration.scorecard.signin import HOSTILE_NAME, assert_safe_page, sign_in
from tests.support.services import create_running

PLAN = {"primary": ["conversion"], "secondary": ["revenue_per_session"]}


def ratio_block(key: str, numerators: list[float], denominators: list[float]) -> dict[str, Any]:
    """Sufficient statistics of a ratio metric over the given units, as the job writes them."""
    products = sum(y * d for y, d in zip(numerators, denominators, strict=True))
    return {"key": key, "n": len(numerators), "sum": sum(numerators), "sum_squares": sum(y * y for y in numerators),
            "denominator": {"sum": sum(denominators), "sum_squares": sum(d * d for d in denominators),
                            "sum_products": products}}  # fmt: skip


def test_a_ratio_metric_shows_its_ratio_in_the_json_and_on_the_page(
    scorecard: ServiceProcess, admin: httpx.Client, owner: httpx.Client, results_dir: Path
) -> None:
    key = create_running(admin, metrics=PLAN)["key"]
    document = simulated_results(key, units_per_variant=500)
    ratio = next(m for m in document["metrics"] if m["name"] == "revenue_per_session")
    # control: 50 revenue over 10 sessions (ratio 5, 12.5 per unit); treatment: 60 over 15 (ratio 4, 15 per unit)
    ratio["variants"] = [ratio_block("control", [10, 15, 12, 13], [2, 3, 2, 3]),
                         ratio_block("treatment", [20, 10, 15, 15], [4, 4, 4, 3])]  # fmt: skip
    publish(results_dir, document)

    card = owner.get(f"/v1/experiments/{key}/scorecard").json()
    metric = next(m for m in card["metrics"] if m["name"] == "revenue_per_session")
    assert [(v["key"], v["n"], v["mean"]) for v in metric["variants"]] == [("control", 4, 5.0), ("treatment", 4, 4.0)]
    comparison = metric["comparisons"][0]  # the effect is computed on the same ratios
    assert comparison["baseline_mean"] == 5.0 and comparison["variant_mean"] == 4.0

    with sign_in(scorecard) as browser:
        html = assert_safe_page(browser.get(f"/experiments/{key}"))
    rows = html[html.index(">revenue_per_session<") :]
    rows = rows[: rows.index("</tbody>")]
    cells = re.findall(r'<td class="num">([^<]*)</td>', rows)
    # per variant: units, then the mean column
    assert cells[0:2] == ["4", "5"] and cells[4:6] == ["4", "4"], cells


def test_an_experiment_without_results_gets_a_page_saying_so(scorecard: ServiceProcess, admin: httpx.Client) -> None:
    key = create_running(admin, name=HOSTILE_NAME)["key"]
    with sign_in(scorecard) as browser:
        response = browser.get(f"/experiments/{key}")
    html = assert_safe_page(response)  # 200: the experiment and its page exist, only the results do not yet
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="no-results"' in html and "Results are not computed yet" in html
    assert "--every" in html and "next round" in html  # when they will come: the job's schedule
    assert "&lt;script&gt;" in html and HOSTILE_NAME not in html
    assert 'href="/experiments"' in html and "Sign out" in html  # the site's own layout


def test_an_unknown_experiment_gets_an_html_404_page(scorecard: ServiceProcess) -> None:
    with sign_in(scorecard) as browser:
        response = browser.get("/experiments/never-created")
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert 'id="not-found"' in response.text and "experiment &#39;never-created&#39; does not exist" in response.text
    assert "<script" not in response.text and "detail" not in response.text
