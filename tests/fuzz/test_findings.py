"""Regression tests for what the OpenAPI fuzzing found, each against the real service."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from deploy.processes import ServiceProcess
from tests.support.services import ADMIN_KEY, SDK_KEY, client_for

NOT_UTF8 = b'{"unit_id": "\xff\xfe"}'


def error_body(response: httpx.Response, status: int) -> dict[str, Any]:
    """The documented error body: `detail` a sentence, `errors` (when present) one per field."""
    assert response.status_code == status, response.text
    body = dict(response.json())
    assert isinstance(body["detail"], str) and body["detail"]
    assert set(body) <= {"detail", "errors"}
    for entry in body.get("errors") or []:
        assert set(entry) == {"loc", "msg"}
    return body


@pytest.mark.parametrize(
    ("path", "methods"),
    [("/v1/experiments", {"GET", "POST"}), ("/v1/experiments/some-key", {"GET", "PATCH"})],
)
def test_405_allow_names_every_method_of_the_path(assignment: ServiceProcess, path: str, methods: set[str]) -> None:
    # Starlette named only the first route's methods: `Allow: POST` for /v1/experiments.
    with client_for(assignment.base_url, ADMIN_KEY) as admin:
        response = admin.request("OPTIONS", path)
    error_body(response, 405)
    assert methods <= {m.strip() for m in response.headers["allow"].split(",")}


@pytest.mark.parametrize(
    ("service", "key", "path"),
    [("assignment", ADMIN_KEY, "/v1/experiments"), ("assignment", SDK_KEY, "/v1/assign/batch"),
     ("assignment", SDK_KEY, "/v1/assign"), ("scorecard", SDK_KEY, "/v1/srm")],
)  # fmt: skip
def test_body_not_utf8_is_422_like_other_malformed_json(
    request: pytest.FixtureRequest, service: str, key: str, path: str
) -> None:
    # FastAPI answered 400 "There was an error parsing the body" (undocumented), where the
    # same bytes on /v1/assign were a 422.
    base_url = request.getfixturevalue(service).base_url
    with client_for(base_url, key) as client:
        response = client.post(path, content=NOT_UTF8, headers={"Content-Type": "application/json"})
    body = error_body(response, 422)
    assert body["errors"] and body["errors"][0]["loc"] == "body"


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/v1/srm", {"counts": {"a": 500, "b": 500}, "weights": {"a": 1, "b": 1}, "min_units": False}, "min_units"),
        ("/v1/srm", {"counts": {"a": "500", "b": 500}, "weights": {"a": 1, "b": 1}}, "counts"),
        ("/v1/power", {"metric_type": "proportion", "baseline_mean": 0.1, "n_per_variant": True}, "n_per_variant"),
        ("/v1/analyze", {"metric": {"type": "mean"}, "cuped": 1, "variants": [
            {"key": "a", "n": 10, "sum": 5, "sum_squares": 5}, {"key": "b", "n": 10, "sum": 6, "sum_squares": 6}]},
         "cuped"),
    ],
)  # fmt: skip
def test_statistics_refuse_values_of_the_wrong_json_type(
    scorecard: ServiceProcess, path: str, payload: dict[str, Any], field: str
) -> None:
    # `false` was taken as the count 0 and `"500"` as 500: a client's mistake silently
    # became a different question.
    with client_for(scorecard.base_url, SDK_KEY) as client:
        body = error_body(client.post(path, json=payload), 422)
    assert any(field in entry["loc"] for entry in body["errors"]), body


@pytest.mark.parametrize("service", ["assignment", "scorecard", "exposure_service"])
def test_documents_describe_the_real_error_body_and_the_key(request: pytest.FixtureRequest, service: str) -> None:
    document = httpx.get(f"{request.getfixturevalue(service).base_url}/openapi.json", timeout=10).json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas  # FastAPI's shape; ours is ErrorBody
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            if path in {"/healthz", "/readyz"}:
                assert "security" not in operation
                continue
            assert operation["security"] == [{"bearerAuth": []}], (method, path)
            for status in ("401", "403"):
                ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorBody", (method, path, status)
