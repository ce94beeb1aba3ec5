"""The scorecard's HTML pages: a strict Content-Security-Policy on every response, and every
string a user or a results document supplies rendered as text, never as markup."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import quote

import httpx
import pytest

from tests.integration.scorecard.documents import publish, simulated_results
from tests.security.conftest import Stack
from tests.security.operations import KEYS
from tests.support.services import experiment_body, unique_key

PAYLOADS = ["<script>alert('xss')</script>", '"><img src=x onerror=alert(1)>', "' onmouseover='alert(2)",
            "</title><svg onload=alert(3)>", "javascript:alert(4)//"]  # fmt: skip
ALL = " ".join(PAYLOADS)
# Elements the pages never use themselves: one showing up came from user text. (The pages'
# own SVG charts are checked for event handlers like every other element.)
FOREIGN_ELEMENTS = {"script", "img", "iframe", "frame", "object", "embed", "base", "math", "style"}


class Markup(HTMLParser):
    """The elements and attributes a browser would build from the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Markup:
    markup = Markup()
    markup.feed(page)
    return markup


def assert_inert(page: str) -> str:
    """No element or attribute came from user text; returns the page's text content."""
    markup = parse(page)
    for tag, attrs in markup.tags:
        assert tag not in FOREIGN_ELEMENTS, f"<{tag}> from user text"
        for name, value in attrs:
            assert not name.startswith("on"), f"event handler {name}= on <{tag}>"
            assert not (value or "").strip().lower().startswith("javascript:"), f"{name}={value} on <{tag}>"
    return " ".join(markup.text)


def csp_directives(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers.get("content-security-policy")
    assert policy, f"no Content-Security-Policy on {response.request.method} {response.url.path}"
    directives = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        directives[name.lower()] = sources
    return directives


def assert_strict_csp(response: httpx.Response) -> None:
    directives = csp_directives(response)
    where = f"{response.request.method} {response.url.path}"
    assert directives.get("default-src") in (["'none'"], ["'self'"]), where
    assert directives.get("frame-ancestors") == ["'none'"], where
    assert "base-uri" in directives and "form-action" in directives, where
    for name, sources in directives.items():
        for source in sources:
            assert not source.startswith("'unsafe-") and source != "*", f"{name} {source} on {where}"
            assert not (name in ("script-src", "default-src") and source in ("data:", "http:", "https:")), where
    assert response.headers.get("x-content-type-options") == "nosniff", where


@pytest.fixture(scope="module")
def hostile_experiment(stack: Stack) -> str:
    """A running experiment whose every free-text field, and its results document, carry payloads."""
    key = unique_key("xss")
    body = experiment_body(key, name=ALL[:200], hypothesis=ALL * 3, owner=PAYLOADS[1],
                           metrics={"primary": ["conversion"], "secondary": ["revenue"]})  # fmt: skip
    with httpx.Client(base_url=stack.url("assignment"), headers={"Authorization": f"Bearer {KEYS['admin']}"},
                      timeout=10) as admin:  # fmt: skip
        assert admin.post("/v1/experiments", json=body).status_code == 201
        assert admin.post(f"/v1/experiments/{key}/status", json={"status": "running"}).status_code == 200
    document = simulated_results(key, counts={"control": 5000, "treatment": 5600})
    document.update(catalog_version=PAYLOADS[0], as_of=PAYLOADS[1], computed_at=PAYLOADS[3])
    document["data_quality"]["watermark"] = PAYLOADS[2]
    publish(stack.results_dir, document)
    return key


@pytest.fixture
def browser(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url("scorecard"), follow_redirects=False, timeout=10) as client:
        signed_in = client.post("/login", data={"key": KEYS["admin"], "next": "/experiments"})
        assert signed_in.status_code == 303
        yield client


def test_hostile_metric_and_variant_names_never_get_in(stack: Stack) -> None:
    """Names that end up in page markup (metrics, variants, keys) are refused at write time."""
    with httpx.Client(base_url=stack.url("assignment"), headers={"Authorization": f"Bearer {KEYS['admin']}"},
                      timeout=10) as admin:  # fmt: skip
        for payload in PAYLOADS:
            for fields in ({"metrics": {"primary": [payload]}},
                           {"variants": [{"key": payload, "weight": 0.5}, {"key": "b", "weight": 0.5}]}):  # fmt: skip
                assert admin.post("/v1/experiments", json=experiment_body(**fields)).status_code == 422, fields
            assert admin.post("/v1/experiments", json=experiment_body(key=payload)).status_code == 422


def test_pages_render_user_strings_as_text(stack: Stack, hostile_experiment: str, browser: httpx.Client) -> None:
    page = browser.get(f"/experiments/{hostile_experiment}")
    listing = browser.get("/experiments")
    assert page.status_code == 200 and listing.status_code == 200
    page_text, listing_text = assert_inert(page.text), assert_inert(listing.text)
    for payload in PAYLOADS:  # shown, as text
        assert payload in page_text, payload
    assert ALL[:200] in listing_text and PAYLOADS[1] in listing_text
    assert "<script" not in page.text + listing.text
    assert "&lt;script&gt;alert(" in page.text and "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text


def test_every_page_response_sends_a_strict_csp(stack: Stack, hostile_experiment: str, browser: httpx.Client) -> None:
    responses = [
        browser.get(f"/experiments/{hostile_experiment}"), browser.get("/experiments"),
        browser.get("/experiments/never-created"), browser.get("/static/scorecard.css"),
        browser.get(f"/experiments/{hostile_experiment}/readout"), browser.get("/experiments/never-created/readout"),
        browser.get("/kpi-tree"), browser.get("/portfolio"), browser.get("/metrics/conversion"),
        browser.get("/metrics/never-defined"),
        browser.get("/static/favicon.svg"), browser.post("/logout"),
        browser.get("/login"), browser.get("/login?next=" + quote(PAYLOADS[1])),
        browser.post("/login", data={"key": "wrong", "next": "/experiments"}),
        browser.post("/login", content=b"key=" + b"x" * 10_000,
                     headers={"Content-Type": "application/x-www-form-urlencoded"}),
        browser.get("/experiments"),  # signed out again: the redirect
    ]  # fmt: skip
    for response in responses:
        assert response.status_code < 500, response.text[:200]
        assert_strict_csp(response)
        if response.headers.get("content-type", "").startswith("text/html"):
            assert response.headers.get("cache-control") == "no-store"
            assert_inert(response.text)


def test_the_sign_in_form_keeps_its_next_target_inert(stack: Stack) -> None:
    for target in PAYLOADS:
        form = httpx.get(f"{stack.url('scorecard')}/login", params={"next": "/" + target}, timeout=10)
        assert form.status_code == 200
        assert_inert(form.text)
