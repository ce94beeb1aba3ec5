"""Every operation of the live services, from their `/openapi.json`, and what each needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from tests.security.conftest import ADMIN_SECRET, SDK_SECRET, Stack

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

# Operations anyone may call, and why. Everything else in a service's OpenAPI document
# must refuse a missing or unknown key (401).
PUBLIC = {
    ("GET", "/healthz"): "liveness probe for orchestrators; says only 'ok'",
    ("GET", "/readyz"): "readiness probe; reports dependency state, never data or keys",
}

# The role each protected operation needs. A new operation fails the walk until it is
# listed here (or in PUBLIC, with a reason).
ROLES: dict[tuple[str, str, str], str] = {
    ("assignment", "GET", "/v1/experiments"): "admin",
    ("assignment", "POST", "/v1/experiments"): "admin",
    ("assignment", "GET", "/v1/experiments/{key}"): "admin",
    ("assignment", "PATCH", "/v1/experiments/{key}"): "admin",
    ("assignment", "POST", "/v1/experiments/{key}/status"): "admin",
    ("assignment", "GET", "/v1/experiments/{key}/audit"): "admin",
    ("assignment", "GET", "/v1/experiments/{key}/overrides"): "admin",
    ("assignment", "PUT", "/v1/experiments/{key}/overrides/{unit_id}"): "admin",
    ("assignment", "DELETE", "/v1/experiments/{key}/overrides/{unit_id}"): "admin",
    ("assignment", "POST", "/v1/assign"): "sdk",
    ("assignment", "POST", "/v1/assign/batch"): "sdk",
    ("assignment", "GET", "/v1/config"): "sdk",
    ("exposure", "POST", "/v1/exposures"): "sdk",
    ("exposure", "POST", "/v1/events"): "sdk",
    ("scorecard", "GET", "/v1/experiments/{key}/scorecard"): "admin",
    ("scorecard", "GET", "/v1/metrics"): "admin",
    ("scorecard", "GET", "/v1/metrics/{name}"): "admin",
    ("scorecard", "GET", "/v1/kpi-tree"): "admin",
    ("scorecard", "GET", "/v1/experiments/{key}/readout"): "admin",
    ("scorecard", "GET", "/v1/portfolio"): "admin",
    # Stateless statistics over numbers the caller sends: either kind of key.
    ("scorecard", "POST", "/v1/analyze"): "any",
    ("scorecard", "POST", "/v1/srm"): "any",
    ("scorecard", "POST", "/v1/power"): "any",
}
KEYS = {"admin": ADMIN_SECRET, "sdk": SDK_SECRET}
WRONG_ROLE = {"admin": "sdk", "sdk": "admin"}
PATH_VALUES = {"key": "security-probe", "unit_id": "unit-1"}


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    template: str
    takes_body: bool

    @property
    def path(self) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "probe-1"), self.template)

    @property
    def role(self) -> str | None:
        return ROLES.get((self.service, self.method, self.template))

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.template}"


def openapi_operations(stack: Stack) -> list[Operation]:
    found = []
    for service in stack.services:
        document: dict[str, Any] = httpx.get(f"{stack.url(service)}/openapi.json", timeout=10).json()
        for template, item in document["paths"].items():
            for method, operation in item.items():
                if method in METHODS:
                    found.append(Operation(service, method.upper(), template, "requestBody" in operation))
    return found
