"""Every operation of every service refuses a missing, unknown or wrong-role key.

The operations come from each running service's own OpenAPI document, so a new endpoint is
checked the day it is added; it fails here until its role is listed in `operations.ROLES`."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx

from tests.security.conftest import Stack
from tests.security.operations import KEYS, PUBLIC, ROLES, WRONG_ROLE, Operation, openapi_operations

REPO = Path(__file__).resolve().parents[2]


def call(http: httpx.Client, stack: Stack, operation: Operation, headers: dict[str, str]) -> httpx.Response:
    return http.request(operation.method, stack.url(operation.service) + operation.path, headers=headers,
                        json={} if operation.takes_body else None)  # fmt: skip


def refusal(response: httpx.Response, status: int) -> str | None:
    """None if `response` is the expected refusal, otherwise what is wrong with it."""
    if response.status_code != status:
        return f"{response.status_code} instead of {status}: {response.text[:200]}"
    detail = response.json().get("detail")
    if not isinstance(detail, str) or not detail:
        return f"{status} without a message: {response.text[:200]}"
    if status == 401 and response.headers.get("www-authenticate") != "Bearer":
        return "401 without 'WWW-Authenticate: Bearer'"
    return None


def test_every_operation_is_listed(stack: Stack) -> None:
    operations = openapi_operations(stack)
    assert {op.service for op in operations} == set(stack.services)
    unlisted = [str(op) for op in operations if op.role is None and (op.method, op.template) not in PUBLIC]
    assert not unlisted, f"operations with no role in tests/security/operations.py ROLES (or PUBLIC): {unlisted}"
    stale = set(ROLES) - {(op.service, op.method, op.template) for op in operations}
    assert not stale, f"listed in ROLES but not served any more: {stale}"


def test_every_operation_refuses_missing_unknown_and_wrong_role_keys(http: httpx.Client, stack: Stack) -> None:
    failures = []
    unknown = f"Bearer unknown-{secrets.token_hex(16)}"
    checked = 0
    for operation in openapi_operations(stack):
        if (operation.method, operation.template) in PUBLIC:
            response = call(http, stack, operation, {})
            if response.status_code >= 400:
                failures.append(f"{operation}: public but answered {response.status_code}")
            continue
        cases = [("no key", {}, 401), ("unknown key", {"Authorization": unknown}, 401),
                 ("not a bearer key", {"Authorization": f"Basic {KEYS['admin']}"}, 401),
                 ("empty bearer", {"Authorization": "Bearer"}, 401)]  # fmt: skip
        if operation.role in WRONG_ROLE:
            wrong = WRONG_ROLE[operation.role]
            cases.append((f"{wrong} key", {"Authorization": f"Bearer {KEYS[wrong]}"}, 403))
        for label, headers, status in cases:
            problem = refusal(call(http, stack, operation, headers), status)
            if problem:
                failures.append(f"{operation} with {label}: {problem}")
            checked += 1
    assert not failures, "\n".join(failures)
    assert checked >= 4 * len(ROLES)


def test_the_right_key_gets_past_authentication(http: httpx.Client, stack: Stack) -> None:
    """The refusals above come from the key check, not from something that refuses everyone."""
    for operation in openapi_operations(stack):
        role = operation.role
        if role is None:
            continue
        for key_role in ("admin", "sdk") if role == "any" else (role,):
            response = call(http, stack, operation, {"Authorization": f"Bearer {KEYS[key_role]}"})
            assert response.status_code not in (401, 403, 429), (str(operation), key_role, response.text[:200])


# Routes hidden from the OpenAPI documents, each with why it is not in the walk above.
HIDDEN_ROUTES = {
    "services/common/http.py": {("GET", "/metrics"): "Prometheus scrape: counters only, no data, no keys"},
    "services/scorecard/api/pages.py": {
        ("GET", "/login"): "the sign-in form",
        ("POST", "/login"): "signs in with an admin key (checked like any key, throttled per address)",
        ("POST", "/logout"): "clears the session cookie",
        ("GET", "/experiments"): "HTML page: redirects to the sign-in form without a session (tested below)",
        ("GET", "/experiments/{key}"): "HTML page: redirects to the sign-in form without a session (tested below)",
        ("GET", "/kpi-tree"): "HTML page: redirects to the sign-in form without a session (tested below)",
        ("GET", "/metrics/{name}"): "HTML page: redirects to the sign-in form without a session (tested below)",
        ("GET", "/experiments/{key}/readout"): "HTML page: redirects to the sign-in form without a session (below)",
        ("GET", "/portfolio"): "HTML page: redirects to the sign-in form without a session (tested below)",
    },
}
ROUTE = re.compile(r"@(?:app|router)\.(get|post|put|patch|delete)\(\s*\"([^\"]*)\"")


def test_no_other_route_hides_from_the_openapi_walk() -> None:
    hiding = {str(path.relative_to(REPO)) for path in (REPO / "services").rglob("*.py")
              if "include_in_schema=False" in path.read_text()}  # fmt: skip
    assert hiding == set(HIDDEN_ROUTES), "a new hidden route: list it in HIDDEN_ROUTES with its reason and a test"
    for source, expected in HIDDEN_ROUTES.items():
        routes = {(m.upper(), p) for m, p in ROUTE.findall((REPO / source).read_text())}
        if source.endswith("http.py"):
            routes = {route for route in routes if route in expected}
        assert routes == set(expected), source


def test_pages_need_a_session(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url("scorecard"), follow_redirects=False, timeout=10) as anonymous:
        for path in (
            "/experiments",
            "/experiments/security-probe",
            "/kpi-tree",
            "/metrics/conversion",
            "/experiments/security-probe/readout",
            "/portfolio",
        ):
            for headers in ({}, {"Authorization": f"Bearer {KEYS['admin']}"}):  # a key is not a session
                response = anonymous.get(path, headers=headers)
                assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
        anonymous.cookies.set("assay_session", "admin-0000000000.9999999999.00")
        assert anonymous.get("/experiments").status_code == 303  # a forged session
        anonymous.cookies.clear()
        refused = anonymous.post("/login", data={"key": KEYS["sdk"], "next": "/experiments"})
        assert refused.status_code == 401 and "not an admin key" in refused.text
