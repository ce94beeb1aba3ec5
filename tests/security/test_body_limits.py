"""Every operation that takes a body refuses an oversized one with 413 and a message, whether
the size is declared up front or only shows while the body streams in."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

from tests.security.conftest import Stack
from tests.security.operations import KEYS, Operation, openapi_operations

OVERSIZED = 6 * 1024 * 1024  # above every service's default limit (1 MiB; exposure 4 MiB)
# Hidden from the OpenAPI documents but taking a body all the same.
HIDDEN_BODY_OPERATIONS = [Operation("scorecard", "POST", "/login", True),
                          Operation("scorecard", "POST", "/logout", True)]  # fmt: skip


def body_operations(stack: Stack) -> list[Operation]:
    operations = [op for op in openapi_operations(stack) if op.takes_body] + HIDDEN_BODY_OPERATIONS
    assert {op.service for op in operations} == set(stack.services)
    return operations


def headers_for(operation: Operation) -> dict[str, str]:
    role = operation.role if operation.role in KEYS else "admin"
    return {"Authorization": f"Bearer {KEYS[role or 'admin']}", "Content-Type": "application/json"}


def declared_too_large(stack: Stack, operation: Operation) -> tuple[int, dict[str, str]]:
    """Send only the headers, announcing a body over the limit: the answer must not wait for it."""
    address = urlsplit(stack.url(operation.service))
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=10)
    try:
        connection.putrequest(operation.method, operation.path)
        for name, value in {**headers_for(operation), "Content-Length": str(OVERSIZED)}.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def streamed_too_large(http: httpx.Client, stack: Stack, operation: Operation) -> httpx.Response:
    """A chunked body (no Content-Length) that only turns out too large while it is read."""

    def chunks() -> Iterator[bytes]:
        yield b'{"blob": "'
        for _ in range(OVERSIZED // 65536):
            yield b"x" * 65536
        yield b'"}'

    return http.request(operation.method, stack.url(operation.service) + operation.path, content=chunks(),
                         headers=headers_for(operation), timeout=30)  # fmt: skip


def test_declared_oversized_bodies_are_413_everywhere(stack: Stack) -> None:
    failures = []
    for operation in body_operations(stack):
        status, body = declared_too_large(stack, operation)
        if status != 413 or "byte limit" not in str(body.get("detail")):
            failures.append(f"{operation}: {status} {body}")
    assert not failures, "\n".join(failures)


def test_streamed_oversized_bodies_are_413_everywhere(http: httpx.Client, stack: Stack) -> None:
    failures = []
    for operation in body_operations(stack):
        if operation.template == "/logout":
            continue  # never reads its body
        response = streamed_too_large(http, stack, operation)
        if response.status_code != 413 or not response.json().get("detail"):
            failures.append(f"{operation}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)


def test_a_bad_content_length_is_400(stack: Stack) -> None:
    operation = Operation("assignment", "POST", "/v1/assign", True)
    address = urlsplit(stack.url(operation.service))
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=10)
    try:
        connection.putrequest("POST", "/v1/assign")
        connection.putheader("Authorization", f"Bearer {KEYS['sdk']}")
        connection.putheader("Content-Length", "12abc")
        connection.endheaders()
        response = connection.getresponse()
        assert response.status in (400, 413) and response.read()
    finally:
        connection.close()
