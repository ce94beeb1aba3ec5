"""A signed-in page client for the scorecard service (the sign-in form sets the session cookie)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from deploy.processes import ServiceProcess
from tests.support.services import ADMIN_KEY

HOSTILE_NAME = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'


@contextmanager
def sign_in(scorecard: ServiceProcess, key: str = ADMIN_KEY, target: str = "/experiments") -> Iterator[httpx.Client]:
    with httpx.Client(base_url=scorecard.base_url, follow_redirects=False, timeout=10) as client:
        response = client.post("/login", data={"key": key, "next": target})
        assert response.status_code == 303, response.text
        yield client


def assert_safe_page(response: httpx.Response) -> str:
    """A page under the strict CSP: no script, no inline style, nothing from other hosts."""
    assert response.status_code == 200, response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    html = response.text
    assert "<script" not in html and "<img" not in html and ' style="' not in html
    assert not re.search(r"https?://(?!127\.0\.0\.1)", html)
    return html
