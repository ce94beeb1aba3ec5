"""A real browser (headless Chromium via chromedriver) signs in and reads a scorecard page, then
the KPI tree, a readout and the portfolio, following their links as a person would.

The scorecard screenshot is kept under test-artifacts/ for people to look at; the others go to
the test's temporary directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from deploy.processes import ServiceProcess
from tests.integration.scorecard.documents import SliceSpec, publish, simulated_results, sliced_results
from tests.support.services import ADMIN_KEY, REPO, create_running

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = REPO / "test-artifacts"
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Chromium is not installed (Debian packages chromium, chromium-driver; `make test` installs them as root)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,1800", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shown(browser: webdriver.Chrome, element_id: str) -> WebElement:
    found: WebElement = WebDriverWait(browser, 15).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )
    return found


def sign_in(browser: webdriver.Chrome, base_url: str, path: str) -> None:
    browser.get(f"{base_url}{path}")
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "key").send_keys(ADMIN_KEY)
    browser.find_element(By.ID, "sign-in").click()
    WebDriverWait(browser, 15).until(expected_conditions.url_to_be(f"{base_url}{path}"))


def test_owner_signs_in_and_reads_the_scorecard(
    browser: webdriver.Chrome, scorecard: ServiceProcess, admin: httpx.Client, results_dir: Path
) -> None:
    plan = {"primary": ["conversion"], "secondary": ["revenue", "revenue_per_session"], "guardrails": ["latency_ms"]}
    key = create_running(admin, metrics=plan, name="Green checkout button",
                         hypothesis="A greener button lifts conversion")["key"]  # fmt: skip
    publish(results_dir, simulated_results(key, counts={"control": 10_000, "treatment": 10_700}, lift=0.2, days=7))

    browser.get(f"{scorecard.base_url}/experiments/{key}")
    assert "/login" in browser.current_url  # not signed in yet
    browser.find_element(By.ID, "key").send_keys(ADMIN_KEY)
    browser.find_element(By.ID, "sign-in").click()
    banner = shown(browser, "srm-banner")  # the click returns before the next page has loaded
    assert browser.current_url.endswith(f"/experiments/{key}")

    assert "Sample ratio mismatch" in banner.text and "blocking" in (banner.get_attribute("class") or "")
    assert "invalid" in browser.find_element(By.ID, "decision").text.lower()
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.metric-row")
    assert len(rows) == 8 and "conversion" in browser.find_element(By.ID, "group-primary").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.forest")) == 4
    timelines = browser.find_elements(By.CSS_SELECTOR, "svg.timeline")
    assert len(timelines) == 3 and timelines[0].size["height"] > 100
    # The stylesheet loaded under the strict CSP: the banner is painted red-ish.
    assert banner.value_of_css_property("border-top-color") in ("rgba(194, 38, 46, 1)", "rgb(194, 38, 46)")
    assert "Units analysed" in browser.find_element(By.ID, "data-quality").text

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "scorecard-page.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_owner_reads_the_kpi_tree_a_readout_and_the_portfolio(
    browser: webdriver.Chrome, scorecard: ServiceProcess, admin: httpx.Client, results_dir: Path, tmp_path: Path
) -> None:
    plan = {"primary": ["conversion"], "secondary": ["revenue"], "guardrails": ["latency_ms"]}
    key = create_running(admin, metrics=plan, name="Browser winner",
                         plan={"planned_units_per_variant": 20_000})["key"]  # fmt: skip
    publish(results_dir, simulated_results(key, units_per_variant=20_000, lift=0.3))
    base = scorecard.base_url
    sign_in(browser, base, "/kpi-tree")

    tree = shown(browser, "node-conversion")
    drawn = browser.find_element(By.CSS_SELECTOR, "svg.kpi-tree")
    assert drawn.size["width"] > 400 and drawn.size["height"] > 150
    names = {element.text for element in browser.find_elements(By.CSS_SELECTOR, "svg.kpi-tree text.name")}
    assert {"weekly_revenue", "revenue", "conversion", "sessions"} <= names
    assert "Browser winner" in tree.text
    browser.save_screenshot(str(tmp_path / "kpi-tree.png"))
    browser.find_element(By.CSS_SELECTOR, 'svg.kpi-tree a[href="/metrics/conversion"]').click()
    WebDriverWait(browser, 15).until(expected_conditions.url_to_be(f"{base}/metrics/conversion"))
    assert "Definition versions" in browser.page_source and "growth" in browser.find_element(By.TAG_NAME, "main").text

    browser.get(f"{base}/experiments/{key}/readout")
    bottom = shown(browser, "bottom-line").text
    assert bottom.startswith("Ship: Browser winner raised conversion by ") and "(95% CI " in bottom
    assert "no guardrail was harmed" in bottom
    assert shown(browser, "kpi-path").text.startswith("Moves the KPI tree: conversion → revenue → weekly_revenue")
    assert "20,000 users per variant of 20,000 planned" in shown(browser, "trust").text
    browser.save_screenshot(str(tmp_path / "readout.png"))

    browser.get(f"{base}/portfolio")
    summary = shown(browser, "summary").text
    assert "experiments:" in summary and "ship" in summary
    assert "Traffic split off" in shown(browser, "trust-flags").text
    browser.save_screenshot(str(tmp_path / "portfolio.png"))
    browser.find_element(By.CSS_SELECTOR, f'#experiments a[href="/experiments/{key}/readout"]').click()
    WebDriverWait(browser, 15).until(expected_conditions.url_to_be(f"{base}/experiments/{key}/readout"))
    assert shown(browser, "bottom-line").text == bottom  # the portfolio's link leads to the same readout
    for name in ("kpi-tree.png", "readout.png", "portfolio.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_owner_reads_the_slices_and_the_warnings(
    browser: webdriver.Chrome, scorecard: ServiceProcess, admin: httpx.Client, results_dir: Path
) -> None:
    plan = {"primary": ["conversion"], "secondary": ["revenue"], "guardrails": ["latency_ms"]}
    key = create_running(admin, metrics=plan, name="Sliced checkout", dimensions=["country"])["key"]
    slices = {"US": SliceSpec({"control": 6000, "treatment": 6000}, lift=-0.2),
              "DE": SliceSpec({"control": 4000, "treatment": 4000}, lift=0.9),
              "FR": SliceSpec({"control": 1000, "treatment": 800}), "__missing__": SliceSpec({"control": 300,
              "treatment": 310})}  # fmt: skip
    publish(results_dir, sliced_results(key, "country", slices))
    sign_in(browser, scorecard.base_url, f"/experiments/{key}")

    warnings = shown(browser, "warnings").text
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "scorecard-warnings.png"))
    assert "simpson: the overall effect on conversion is positive but negative in slices holding" in warnings
    assert "slice srm: country = FR" in warnings and "slice mix: the split of units by country" in warnings
    # The warnings sit near the top: above the first metric table.
    assert shown(browser, "warnings").location["y"] < browser.find_element(By.ID, "group-primary").location["y"]
    details = browser.find_element(By.ID, "slices-country")
    assert details.get_attribute("open") is None  # collapsed by default
    rows = browser.find_elements(By.CSS_SELECTOR, "#slices-country tr.slice-row")
    assert len(rows) == 4 and not rows[0].is_displayed()
    items = browser.find_elements(By.CSS_SELECTOR, "#warnings li")  # every warning here is about country
    assert f"{len(items)} warnings" in details.find_element(By.TAG_NAME, "summary").text
    details.find_element(By.TAG_NAME, "summary").click()
    WebDriverWait(browser, 5).until(lambda _: rows[0].is_displayed())
    flagged = browser.find_elements(By.CSS_SELECTOR, "#slices-country tr.srm-mismatch")
    assert len(flagged) == 1 and flagged[0].text.startswith("FR") and "mismatch" in flagged[0].text
    assert [row.text.split("\n")[0].split(" ")[0] for row in rows][:3] == ["US", "DE", "FR"]
    assert "not set" in rows[3].text
    us = rows[0].find_elements(By.CSS_SELECTOR, "td.num")
    assert "p " in us[2].text and "(raw " in us[2].text  # conversion: effect, interval, corrected and raw p
    mismatch = flagged[0].find_element(By.CSS_SELECTOR, "td.srm.mismatch")
    assert mismatch.value_of_css_property("color") in ("rgba(194, 38, 46, 1)", "rgb(194, 38, 46)")

    browser.execute_script("arguments[0].scrollIntoView()", details)
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "scorecard-slices.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
