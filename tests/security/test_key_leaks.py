"""API keys never show up in a log line or a response, however a client sends them: right,
wrong-role or mistyped, in the Authorization header, another header, the query string or the body."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx

from tests.security.conftest import SECRETS, Stack
from tests.security.operations import KEYS, Operation, openapi_operations
from tests.support.eventually import eventually


def placements(key: str) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """(label, headers, query parameters) for every way a client might send `key`."""
    yield "bearer", {"Authorization": f"Bearer {key}"}, {}
    yield "mistyped (suffix)", {"Authorization": f"Bearer {key}x"}, {}
    yield "mistyped (prefix)", {"Authorization": f"Bearer x{key}"}, {}
    yield "no scheme", {"Authorization": key}, {}
    yield "other scheme", {"Authorization": f"Token {key}"}, {}
    yield "two keys", {"Authorization": f"Bearer {key} {key}"}, {}
    yield "bogus header", {"X-Api-Key": key, "Cookie": f"assay_session={key}"}, {}
    yield "query string", {}, {"api_key": key, "key": key}


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a key appears in {where}"


def send(http: httpx.Client, stack: Stack, operation: Operation, headers: dict[str, str],
         params: dict[str, str], key: str, marker: str) -> httpx.Response:  # fmt: skip
    # The key also rides in the body, as a field no schema has: a common client mistake.
    return http.request(operation.method, stack.url(operation.service) + operation.path, params=params,
                        headers={**headers, "X-Request-Id": marker},
                        json={"api_key": key} if operation.takes_body else None)  # fmt: skip


def test_keys_never_reach_logs_or_responses(http: httpx.Client, stack: Stack) -> None:
    marker = f"leakprobe{uuid.uuid4().hex[:12]}"
    sent = 0
    for operation in openapi_operations(stack):
        for key in KEYS.values():
            for label, headers, params in placements(key):
                response = send(http, stack, operation, headers, params, key, marker)
                assert response.status_code < 500 and response.status_code != 429, (
                    str(operation), label, response.status_code, response.text[:200])  # fmt: skip
                assert_no_secret(f"the response to {operation} ({label})", response.text)
                assert_no_secret(f"the response headers of {operation} ({label})", str(response.headers))
                sent += 1
    with httpx.Client(base_url=stack.url("scorecard"), follow_redirects=False, timeout=10,
                      headers={"X-Request-Id": marker}) as browser:  # fmt: skip
        for key in (*KEYS.values(), KEYS["admin"] + "x"):
            response = browser.post("/login", data={"key": key, "next": "/experiments"})
            assert_no_secret("the sign-in answer", response.text + str(response.headers))
            page = browser.get("/experiments")
            assert_no_secret("a page", page.text + str(page.headers))
            sent += 2
    # Every request was logged (access log, carrying our request id), so the scan below sees them.
    eventually(lambda: stack.logs().count(marker) >= sent, timeout=10, interval=0.1,
               message=lambda: f"{stack.logs().count(marker)} of {sent} requests logged")  # fmt: skip
    logs = stack.logs()
    for number, line in enumerate(logs.splitlines(), 1):
        assert_no_secret(f"log line {number}: {line[:120]}...", line)
