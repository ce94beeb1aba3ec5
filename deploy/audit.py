"""`make audit`: known vulnerabilities in Assay's pinned dependencies, with pip-audit.

Audits every `name==version` pin in pyproject.toml (all extras) plus every other package
installed in the virtualenv (the transitive dependencies as resolved), without installing
anything. Exit 1 on a finding that is not listed in `ACCEPTED` (see docs/security.md).

When no vulnerability service answers (networks that reach only a package mirror), or one
answers but knows none of the packages, a last resort asks PyPI's project pages, which carry
the advisories of a project's *latest* release: every package pinned at its latest release is
audited that way, the others are listed as not audited. When nothing at all could be audited
that is printed plainly and the exit status is 0: such a run checked nothing, and says so
instead of passing for a clean audit.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^;\s]+)")
SERVICES = ("pypi", "osv")
LATEST_RELEASE_SERVICE = "pypi-latest-release"
PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
# Our own packages (installed editable from this repository): nothing to look up.
OWN_PACKAGES = frozenset({"assay", "assay-platform"})
# Findings examined and accepted, by advisory id, with the reason (mirrored in docs/security.md).
ACCEPTED: dict[str, str] = {}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(pyproject: Path) -> dict[str, str]:
    """`name -> version` for every exact pin in the project's dependencies and extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    pins = {}
    for line in lines:
        match = PIN.match(line)
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def installed_packages() -> dict[str, str]:
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and normalize(name) not in OWN_PACKAGES:
            found[normalize(name)] = dist.version
    return found


@dataclass(frozen=True)
class Finding:
    package: str
    advisory: str
    fixed_in: tuple[str, ...]


@dataclass
class Report:
    """What one vulnerability service said about the requirements."""

    service: str
    audited: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None

    @property
    def reached(self) -> bool:
        return self.error is None and bool(self.audited)


def parse_report(service: str, output: str) -> Report:
    """pip-audit's JSON (`--format json`) as a Report; unparsable output is an error report."""
    try:
        document = json.loads(output)
    except ValueError:
        return Report(service, error="no report (the service could not be reached)")
    report = Report(service)
    for dependency in document.get("dependencies", []):
        name = f"{dependency['name']}=={dependency.get('version', '?')}"
        if "skip_reason" in dependency:
            report.skipped[dependency["name"]] = dependency["skip_reason"]
            continue
        report.audited.append(name)
        for vuln in dependency.get("vulns", []):
            ids = {vuln.get("id"), *vuln.get("aliases", [])}
            if not ids & set(ACCEPTED):
                report.findings.append(Finding(name, str(vuln.get("id")), tuple(vuln.get("fix_versions", []))))
    return report


def run_pip_audit(service: str, requirements: Path, timeout: int) -> Report:
    command = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--no-deps", "--disable-pip",
               "--format", "json", "--progress-spinner", "off", "-s", service, "--timeout", str(timeout)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    report = parse_report(service, done.stdout)
    if report.error is not None:
        last = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        report.error = f"{report.error}: {last[0][:300]}"
    return report


def latest_release_entry(name: str, version: str, timeout: int) -> dict[str, object]:
    """One package in pip-audit's JSON shape, from PyPI's project page (latest release only)."""
    import httpx

    try:
        response = httpx.get(PROJECT_JSON.format(name=name), timeout=timeout, follow_redirects=True)
        response.raise_for_status()
        project = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"name": name, "version": version, "skip_reason": f"PyPI project page: {type(exc).__name__}"}
    return entry_from_project(name, version, project)


def entry_from_project(name: str, version: str, project: dict[str, Any]) -> dict[str, object]:
    latest = str(project.get("info", {}).get("version", "?"))
    if latest != version:
        return {"name": name, "version": version,
                "skip_reason": f"latest release is {latest}; PyPI's project page covers only that one"}  # fmt: skip
    vulns = [{"id": v.get("id"), "aliases": v.get("aliases", []), "fix_versions": v.get("fixed_in", [])}
             for v in project.get("vulnerabilities", [])]  # fmt: skip
    return {"name": name, "version": version, "vulns": vulns}


def audit_latest_releases(packages: dict[str, str], timeout: int) -> Report:
    """The last resort where pip-audit's services are unreachable but PyPI's pages are not."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        entries = list(pool.map(lambda item: latest_release_entry(item[0], item[1], timeout), sorted(packages.items())))
    report = parse_report(LATEST_RELEASE_SERVICE, json.dumps({"dependencies": entries}))
    if not report.audited:
        report.error = "no package could be checked against PyPI's project pages"
    return report


def write_requirements(packages: dict[str, str], directory: Path) -> Path:
    path = directory / "requirements.txt"
    path.write_text("".join(f"{name}=={version}\n" for name, version in sorted(packages.items())))
    return path


def describe(report: Report) -> str:
    if report.error is not None:
        return f"{report.service}: {report.error}"
    total = len(report.skipped) + len(report.audited)
    return f"{report.service}: no data for {len(report.skipped)} of {total} packages"


def verdict(reports: Sequence[Report], package_count: int) -> tuple[int, list[str]]:
    """Exit status and what to print, from the reports of the services tried (last one decides)."""
    report = reports[-1]
    if not report.reached:
        return 0, [f"pip-audit: NOTHING WAS AUDITED: no vulnerability service could be used from here "
                   f"({'; '.join(describe(r) for r in reports)}). Not failing the build for it; "
                   "run `make audit` where a vulnerability service is reachable."]  # fmt: skip
    lines = [f"pip-audit ({report.service}): {len(report.audited)} of {package_count} packages audited"]
    if report.service == LATEST_RELEASE_SERVICE:
        lines.insert(0, f"pip-audit's services could not be used ({'; '.join(describe(r) for r in reports[:-1])}); "
                        "falling back to the advisories on PyPI's project pages (latest releases only)")  # fmt: skip
    lines += [f"  not audited: {name}: {reason}" for name, reason in sorted(report.skipped.items())]
    for finding in report.findings:
        lines.append(f"  VULNERABLE {finding.package}: {finding.advisory} "
                     f"(fixed in: {', '.join(finding.fixed_in) or 'no release yet'})")  # fmt: skip
    if report.findings:
        lines.append(f"pip-audit: {len(report.findings)} known vulnerabilities: bump the pins in pyproject.toml, "
                     "or document an accepted one in docs/security.md and deploy/audit.py ACCEPTED")  # fmt: skip
        return 1, lines
    return 0, [*lines, "pip-audit: no known vulnerabilities"]


def audit(packages: dict[str, str], services: Sequence[str], timeout: int) -> int:
    reports = []
    with tempfile.TemporaryDirectory() as directory:
        requirements = write_requirements(packages, Path(directory))
        for service in services:
            reports.append(run_pip_audit(service, requirements, timeout))
            if reports[-1].reached:
                break
    if not reports or not reports[-1].reached:
        reports.append(audit_latest_releases(packages, timeout))
    status, lines = verdict(reports, len(packages))
    print("\n".join(lines))
    return status


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pins-only", action="store_true", help="only the pins in pyproject.toml")
    parser.add_argument("--service", action="append", choices=SERVICES, help="vulnerability services, in order")
    parser.add_argument("--timeout", type=int, default=15, help="socket timeout in seconds")
    args = parser.parse_args(list(argv) if argv is not None else None)
    pins = pinned_requirements(REPO / "pyproject.toml")
    packages = pins if args.pins_only else {**installed_packages(), **pins}
    return audit(packages, args.service or SERVICES, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
