"""The readout and metric pages, read in a browser: an unknown experiment or metric gets an HTML 404
naming what is missing, and an experiment without results a page saying they are not computed yet,
never a JSON error body; under the strict CSP, with hostile names shown as text."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from deploy.processes import ServiceProcess
from tests.integration.scorecard.signin import HOSTILE_NAME, assert_safe_page, sign_in
from tests.support.services import create_running

# No "/": a slash would end the path segment before the page's route ever saw the name.
HOSTILE_METRIC = '"><img src=x onerror=alert(1)>'


def assert_html_404(response: httpx.Response) -> str:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert 'id="not-found"' in html and "Sign out" in html  # the site's own layout, signed in
    assert "<script" not in html and "<img" not in html and ' style="' not in html and '"detail"' not in html
    return html


def test_the_readout_of_an_experiment_without_results_says_they_are_not_computed_yet(
    scorecard: ServiceProcess, admin: httpx.Client
) -> None:
    key = create_running(admin, name=HOSTILE_NAME)["key"]
    with sign_in(scorecard) as browser:
        response = browser.get(f"/experiments/{key}/readout")
    html = assert_safe_page(response)  # 200: the experiment and its readout exist, only the results do not yet
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="no-results"' in html and "Results are not computed yet" in html and "--every" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and HOSTILE_NAME not in html
    assert 'href="/experiments"' in html


def test_the_readout_of_an_unknown_experiment_is_an_html_404(scorecard: ServiceProcess) -> None:
    with sign_in(scorecard) as browser:
        html = assert_html_404(browser.get("/experiments/never-created/readout"))
    assert "experiment &#39;never-created&#39; does not exist" in html
    assert "pick the experiment from the" in html and 'href="/experiments"' in html


@pytest.mark.parametrize("name", ["never_defined", "Conversion", HOSTILE_METRIC])
def test_an_unknown_or_malformed_metric_is_an_html_404_naming_it(scorecard: ServiceProcess, name: str) -> None:
    with sign_in(scorecard) as browser:
        html = assert_html_404(browser.get(f"/metrics/{quote(name, safe='')}"))
    shown = name.replace('"', "&#34;").replace("<", "&lt;").replace(">", "&gt;")
    assert f"the metric catalog has no metric &#39;{shown}&#39;" in html
    assert "pick the metric from the" in html and 'href="/kpi-tree"' in html


def test_signed_out_readers_of_missing_pages_are_sent_to_sign_in(scorecard: ServiceProcess) -> None:
    with httpx.Client(base_url=scorecard.base_url, follow_redirects=False, timeout=10) as anonymous:
        for path in ("/experiments/never-created/readout", "/metrics/never_defined"):
            redirect = anonymous.get(path)
            assert redirect.status_code == 303 and redirect.headers["location"] == f"/login?next={path}"
