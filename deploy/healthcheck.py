"""The image's HEALTHCHECK: probe whatever the container runs (`python -m deploy.healthcheck`).

One image serves every command, so the probe reads the main process's command line
(`/proc/1/cmdline`) and checks that command's own surface: the HTTP services' health
endpoints on their configured ports, the ingest's health server, the scheduler's status
file (see `services.metrics.job.status`), the Spark master's and worker's web UIs.
Exit 0 healthy, 1 not; one line on stdout says why.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

Probe = Callable[[], str | None]  # None when healthy, else the reason


def http_probe(port_variable: str, default_port: int, path: str) -> Probe:
    def probe() -> str | None:
        url = f"http://127.0.0.1:{os.environ.get(port_variable, default_port)}{path}"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return None if response.status == 200 else f"{url} answered {response.status}"
        except OSError as exc:
            return f"{url}: {exc}"

    return probe


def scheduler_probe() -> str | None:
    from services.metrics.job.status import unhealthy_reason
    from services.metrics.settings import MetricsSettings

    return unhealthy_reason(MetricsSettings().scheduler_status_path)


def probe_for(command: Sequence[str]) -> Probe | None:
    """The probe for a container's main command, or None when it has no known surface."""
    text = " ".join(command)
    if "services.assignment" in text:
        return http_probe("ASSAY_ASSIGNMENT_PORT", 8001, "/readyz")
    if "services.exposure" in text:
        return http_probe("ASSAY_EXPOSURE_PORT", 8002, "/healthz")
    if "services.scorecard" in text:
        return http_probe("ASSAY_SCORECARD_PORT", 8003, "/readyz")
    if "services.metrics" in text and " run " in f"{text} " and "--every" in command:
        return scheduler_probe
    if "services.metrics" in text:
        return http_probe("ASSAY_METRICS_PORT", 8004, "/healthz")
    if "deploy.master.Master" in text:
        return http_probe("SPARK_MASTER_WEBUI_PORT", 8080, "/")
    if "deploy.worker.Worker" in text:
        return http_probe("SPARK_WORKER_WEBUI_PORT", 8081, "/")
    return None


def main_command(proc: Path = Path("/proc/1/cmdline")) -> list[str]:
    return [part for part in proc.read_bytes().decode(errors="replace").split("\0") if part]


def main() -> int:
    command = main_command()
    probe = probe_for(command)
    if probe is None:
        print(f"no health probe for {' '.join(command)[:200]!r}: healthy while it runs")
        return 0
    reason = probe()
    print(reason or "healthy")
    return 0 if reason is None else 1


if __name__ == "__main__":
    sys.exit(main())
