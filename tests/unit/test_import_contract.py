"""The seams between the parts hold: no service imports another, services.common and the SDK
import no service (pyproject.toml [tool.importlinter], checked by import-linter). A second
test plants a violation in a throwaway tree and checks the same contracts catch it, so the
first test cannot pass merely because the contracts check nothing."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
SERVICES = ("services.assignment", "services.exposure", "services.metrics", "services.scorecard")


def contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def lint_imports(config: Path, cwd: Path, pythonpath: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_contracts_cover_every_service_and_the_shared_code() -> None:
    found = contracts()
    assert sorted(found["services-independent"]["modules"]) == sorted(SERVICES)
    assert found["common-imports-no-service"]["source_modules"] == ["services.common"]
    assert set(SERVICES) <= set(found["common-imports-no-service"]["forbidden_modules"])
    assert found["sdk-imports-no-service"]["source_modules"] == ["assay"]
    assert "services" in found["sdk-imports-no-service"]["forbidden_modules"]


def test_the_repository_keeps_every_import_contract() -> None:
    result = lint_imports(ROOT / "pyproject.toml", ROOT, f"{ROOT}:{ROOT / 'sdk' / 'python'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(contracts())} kept, 0 broken" in result.stdout


def _package(root: Path, dotted: str, body: str = "") -> None:
    directory = root.joinpath(*dotted.split("."))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "__init__.py").write_text(body)


def test_the_contracts_catch_a_service_importing_another(tmp_path: Path) -> None:
    for name in ("services", "services.common", *SERVICES, "assay", "deploy"):
        _package(tmp_path, name)
    _package(tmp_path, "services.scorecard", "import services.assignment\n")  # the violation
    _package(tmp_path, "services.common", "import assay\n")  # allowed
    config = tmp_path / "contracts.toml"
    config.write_text((ROOT / "pyproject.toml").read_text())
    result = lint_imports(config, tmp_path, str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Services never import one another BROKEN" in result.stdout
    assert "services.scorecard -> services.assignment" in result.stdout
    assert "services.common imports no service KEPT" in result.stdout
