"""The docker-compose stack, for real, when a Docker engine is reachable (skipped otherwise,
with the reason printed: this machine has the Docker client but no engine)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
KEYS = {"ASSAY_ADMIN_KEYS": "e2e-admin-key-0123456789abcdef", "ASSAY_SDK_KEYS": "e2e-sdk-key-0123456789abcdef"}


def docker_engine_reason() -> str | None:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:  # no engine, no socket, no permission: all mean "cannot run here"
        return f"no reachable Docker engine ({type(exc).__name__}: {str(exc)[:120]})"
    return None


REASON = docker_engine_reason()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_stack_comes_up_and_assigns() -> None:
    project = f"assay-e2e-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, **KEYS, "COMPOSE_PROJECT_NAME": project, "ASSAY_ASSIGNMENT_PORT": "18001"}
    compose = ["docker", "compose", "-f", str(REPO / "docker-compose.yml")]
    subprocess.run([*compose, "up", "-d", "--build", "--wait"], env=env, check=True, cwd=REPO, timeout=1800)
    try:
        headers = {"Authorization": f"Bearer {KEYS['ASSAY_ADMIN_KEYS']}"}
        body = {"key": "e2e", "name": "e2e", "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]}
        deadline = time.monotonic() + 120
        while httpx.get("http://127.0.0.1:18001/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(2)
        assert httpx.post("http://127.0.0.1:18001/v1/experiments", json=body, headers=headers).status_code == 201
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, cwd=REPO, timeout=600)
