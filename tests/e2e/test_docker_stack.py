"""The stock docker-compose stack (registry images: redis:7, apache/kafka) when a Docker engine
is reachable, with docker-compose v1 or v2, whichever is there; skipped otherwise, with the
reason. `make compose-test` runs the full flow offline, starting its own engine."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from deploy.compose_test.compose import REPO, Compose, compose_program
from deploy.compose_test.engine import engine_answers

KEYS = {"ASSAY_ADMIN_KEYS": "e2e-admin-key-0123456789abcdef", "ASSAY_SDK_KEYS": "e2e-sdk-key-0123456789abcdef"}


def skip_reason() -> str | None:
    program = compose_program()
    if program is None:
        return "neither `docker compose` (v2) nor `docker-compose` (v1) is installed"
    try:
        if not engine_answers(dict(os.environ)):
            return "no reachable Docker engine (make compose-test starts its own)"
    except (OSError, TimeoutError) as exc:
        return f"no reachable Docker engine ({type(exc).__name__})"
    return None


REASON = skip_reason()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_stack_comes_up_and_assigns() -> None:
    env = {**os.environ, **KEYS, "ASSAY_ASSIGNMENT_PORT": "18001", "ASSAY_EXPOSURE_PORT": "18002",
           "ASSAY_SCORECARD_PORT": "18003"}  # fmt: skip
    compose = Compose(compose_program() or [], f"assay-e2e-{uuid.uuid4().hex[:6]}", env,
                      files=(REPO / "docker-compose.yml",))  # fmt: skip
    compose.run("up", "-d", "--build", timeout=1800)
    try:
        compose.wait_healthy(timeout=300)
        headers = {"Authorization": f"Bearer {KEYS['ASSAY_ADMIN_KEYS']}"}
        body = {"key": "e2e", "name": "e2e", "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]}
        created = httpx.post("http://127.0.0.1:18001/v1/experiments", json=body, headers=headers, timeout=30)
        assert created.status_code == 201, created.text
    finally:
        compose.down()
