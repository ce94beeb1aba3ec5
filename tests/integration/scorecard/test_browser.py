"""A real browser (headless Chromium via chromedriver) signs in and reads a scorecard page.

The screenshot is kept under test-artifacts/ for people to look at.
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

from deploy.processes import ServiceProcess
from tests.integration.scorecard.documents import publish, simulated_results
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
    assert browser.current_url.endswith(f"/experiments/{key}")

    banner = browser.find_element(By.ID, "srm-banner")
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
