"""The deployment's defects found by running it (issue 12) stay fixed: checked from the files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy.compose_test.flow import without_timestamps
from deploy.offline.build import debian_mirror

REPO = Path(__file__).resolve().parents[3]
SERVICES = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
DOCKERFILES = [REPO / "deploy" / "Dockerfile", REPO / "deploy" / "offline" / "Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_image_is_architecture_neutral_and_probes_each_command(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert "openjdk-amd64" not in text and "JAVA_HOME=/usr/lib/jvm/default-java" in text
    assert re.search(r"^EXPOSE .*\b8004\b", text, re.M)
    assert 'CMD ["python", "-m", "deploy.healthcheck"]' in text and "8001/healthz" not in text
    assert "SPARK_WORKER_DIR=/tmp/spark-worker" in text


def test_cluster_profile_and_scheduler() -> None:
    assert SERVICES["spark-worker"]["environment"]["SPARK_WORKER_DIR"] == "/tmp/spark-worker"
    scheduler = SERVICES["metrics-scheduler"]
    assert scheduler["healthcheck"]["test"] == ["CMD", "python", "-m", "deploy.healthcheck"]
    assert "ASSAY_SPARK_CORES_MAX" in scheduler["environment"]
    # The long-lived session runs with the small pages the test suite uses (see docs/deploy.md).
    assert scheduler["environment"]["ASSAY_SPARK_PAGE_SIZE"] == "${ASSAY_SPARK_PAGE_SIZE:-2m}"


def test_exposure_scales_out_and_cookie_is_a_setting() -> None:
    assert "ASSAY_SPOOL_SLOTS" in SERVICES["exposure"]["environment"]
    assert SERVICES["scorecard"]["environment"]["ASSAY_SECURE_COOKIES"] == "${ASSAY_SECURE_COOKIES:-true}"


def test_secrets_stay_out_of_git_and_of_the_build_context() -> None:
    assert ".env" in (REPO / ".gitignore").read_text().split()
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".assay", ".env", ".git"} <= set(ignored)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
def test_offline_override_validates_with_the_production_file() -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")},
           "ASSAY_ADMIN_KEYS": "offline-check-admin-key-00", "ASSAY_SDK_KEYS": "offline-check-sdk-key-000"}  # fmt: skip
    command = ["docker-compose", "-f", "docker-compose.yml", "-f", "deploy/offline/docker-compose.offline.yml",
               "--profile", "cluster", "config"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)["services"]
    assert merged["redis"]["image"] == merged["kafka"]["image"] == merged["assignment"]["image"]
    assert "--protected-mode" in merged["redis"]["command"]


def test_results_documents_compare_without_their_timestamps() -> None:
    local = b'{"computed_at": "2026-01-01T00:00:00Z", "as_of": "x", "n": 1}'
    cluster = b'{"computed_at": "2026-01-02T00:00:00Z", "as_of": "x", "n": 1}'
    assert without_timestamps(local) == without_timestamps(cluster)
    assert without_timestamps(local) != without_timestamps(local.replace(b'"n": 1', b'"n": 2'))


def test_debian_mirror_read_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
        "\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"
    assert debian_mirror(tmp_path / "missing") == "http://deb.debian.org/debian"
