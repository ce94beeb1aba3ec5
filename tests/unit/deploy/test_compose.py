"""docker-compose.yml, checked without a Docker engine: it validates, and every service's
command, port and environment variables match the code's settings."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.assignment.settings import AssignmentSettings
from services.common.settings import ServiceSettings
from services.exposure.settings import ExposureSettings
from services.metrics.settings import MetricsSettings
from services.scorecard.settings import ScorecardSettings

REPO = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
SETTINGS: dict[str, type[ServiceSettings]] = {
    "assignment": AssignmentSettings, "exposure": ExposureSettings, "scorecard": ScorecardSettings,
    "metrics-ingest": MetricsSettings, "metrics-scheduler": MetricsSettings,
}  # fmt: skip
PORTS = {"assignment": ("assignment_port", 8001), "exposure": ("exposure_port", 8002),
         "scorecard": ("scorecard_port", 8003)}  # fmt: skip
INTERNAL_PORTS = {"metrics-ingest": ("metrics_port", 8004)}
DUMMY_KEYS = {"ASSAY_ADMIN_KEYS": "compose-check-admin-key-000", "ASSAY_SDK_KEYS": "compose-check-sdk-key-0000"}


def assay_services() -> list[str]:
    return [name for name, spec in SERVICES.items() if "services." in " ".join(spec.get("command", []))]


def test_every_assay_component_is_a_service() -> None:
    assert set(SETTINGS) <= set(SERVICES)
    assert {"redis", "kafka", "topic-init", "spark-master", "spark-worker"} <= set(SERVICES)
    assert SERVICES["spark-master"]["profiles"] == ["cluster"]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_environment_variables_are_settings_the_code_reads(name: str) -> None:
    fields = SETTINGS[name].model_fields
    for variable in SERVICES[name]["environment"]:
        if variable.startswith("ASSAY_"):
            field = variable.removeprefix("ASSAY_").lower()
            assert field in fields, f"{name}: {variable} is not a field of {SETTINGS[name].__name__}"


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_commands_run_real_entry_points(name: str) -> None:
    command = SERVICES[name]["command"]
    assert command[:2] == ["python", "-m"]
    module = importlib.import_module(f"{command[2]}.__main__")
    if command[2] == "services.metrics":
        args = [a.replace("${ASSAY_METRICS_INTERVAL_SECONDS:-900}", "900") for a in command[3:]]
        module.parse_args(args)  # raises SystemExit on an unknown subcommand or option


@pytest.mark.parametrize("name", sorted(PORTS))
def test_ports_match_settings(name: str) -> None:
    field, default = PORTS[name]
    assert SETTINGS[name].model_fields[field].default == default
    assert SERVICES[name]["environment"][f"ASSAY_{field.upper()}"] == str(default)
    assert any(str(mapping).endswith(f":{default}") for mapping in SERVICES[name]["ports"])
    assert str(default) in " ".join(SERVICES[name]["healthcheck"]["test"])


def test_ingest_health_port_matches_settings() -> None:
    field, default = INTERNAL_PORTS["metrics-ingest"]
    assert MetricsSettings.model_fields[field].default == default
    assert SERVICES["metrics-ingest"]["environment"]["ASSAY_METRICS_PORT"] == str(default)
    assert str(default) in " ".join(SERVICES["metrics-ingest"]["healthcheck"]["test"])


def test_health_checks_dependencies_and_secrets() -> None:
    for name, spec in SERVICES.items():
        if name != "topic-init":
            assert "healthcheck" in spec, f"{name} has no healthcheck"
        for dependency, condition in (spec.get("depends_on") or {}).items():
            assert condition["condition"] in ("service_healthy", "service_completed_successfully", "service_started")
            assert dependency in SERVICES
    for name in assay_services():
        environment = SERVICES[name]["environment"]
        for secret in ("ASSAY_ADMIN_KEYS", "ASSAY_SDK_KEYS"):
            assert re.fullmatch(rf"\$\{{{secret}:\?.+\}}", environment[secret]), (name, secret)
        assert "assay-data:/data" in SERVICES[name]["volumes"]
    assert (REPO / ".env.example").exists() and (REPO / "deploy" / "Dockerfile").exists()


def test_dockerfile_is_multi_stage_non_root_with_java() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert dockerfile.count("FROM ") >= 2 and "openjdk-17-jre-headless" in dockerfile
    assert re.search(r"^USER assay$", dockerfile, re.M)


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="Debian's docker-compose is not installed")
def test_compose_file_validates_and_refuses_to_start_without_keys() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    command = ["docker-compose", "-f", str(REPO / "docker-compose.yml"), "--profile", "cluster", "config", "-q"]
    valid = subprocess.run(command, env={**base, **DUMMY_KEYS}, capture_output=True, text=True, cwd=REPO)
    assert valid.returncode == 0, valid.stderr
    missing = subprocess.run(command, env=base, capture_output=True, text=True, cwd=REPO)
    assert missing.returncode != 0 and "set ASSAY_ADMIN_KEYS" in missing.stderr
