"""The local runner behind `make up` / `make down`: no Docker, real Redis, real services.

State (Redis data, logs, pid files) lives under ASSAY_DATA_DIR (default `.assay/`).
`up` is idempotent: what already runs is left alone. `down` stops exactly the processes
whose pid files `up` wrote, and only if the pid still belongs to the process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from deploy.broker import TansuBroker
from deploy.demo import has_results, run_demo
from deploy.embedded import RedisServer, port_open
from deploy.processes import ServiceProcess
from deploy.stack import METRICS_JOB, REPO, SERVICES, Layout, layout_from_env


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _running(layout: Layout, name: str) -> dict[str, object] | None:
    """The recorded process if it is still alive and still the one we started."""
    path = layout.pid_file(name)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    pid = int(record["pid"])
    if record["marker"] in _cmdline(pid):
        return dict(record)
    path.unlink(missing_ok=True)
    return None


def _record(layout: Layout, name: str, pid: int, marker: str, url: str) -> None:
    layout.pids.mkdir(parents=True, exist_ok=True)
    layout.pid_file(name).write_text(json.dumps({"pid": pid, "marker": marker, "url": url}))


def _start_redis(layout: Layout, env: dict[str, str]) -> str:
    if os.environ.get("ASSAY_REDIS_URL"):
        return os.environ["ASSAY_REDIS_URL"]
    port = int(os.environ.get("ASSAY_REDIS_PORT", "6379"))
    url = f"redis://127.0.0.1:{port}/0"
    if _running(layout, "redis"):
        return url
    if port_open("127.0.0.1", port):
        sys.exit(f"port {port} is taken by another program; set ASSAY_REDIS_PORT or ASSAY_REDIS_URL")
    server = RedisServer(layout.data_dir / "redis", port=port).start()
    assert server.process is not None
    _record(layout, "redis", server.process.pid, "redis-server", url)
    return url


def _start_broker(layout: Layout) -> str:
    if os.environ.get("ASSAY_KAFKA_BOOTSTRAP"):
        return os.environ["ASSAY_KAFKA_BOOTSTRAP"]
    port = int(os.environ.get("ASSAY_BROKER_PORT", "9092"))
    bootstrap = f"127.0.0.1:{port}"
    if _running(layout, "broker"):
        return bootstrap
    if port_open("127.0.0.1", port):
        sys.exit(f"port {port} is taken by another program; set ASSAY_BROKER_PORT or ASSAY_KAFKA_BOOTSTRAP")
    broker = TansuBroker(port=port, log_path=layout.logs / "broker.log").start()
    assert broker.process is not None
    _record(layout, "broker", broker.process.pid, "tansu", bootstrap)
    return bootstrap


def _start_service(
    layout: Layout, name: str, module: str, port_variable: str, default_port: int, env: dict[str, str]
) -> str:
    port = int(os.environ.get(port_variable, str(default_port)))
    url = f"http://127.0.0.1:{port}"
    if _running(layout, name):
        return url
    if port_open("127.0.0.1", port):
        sys.exit(f"port {port} is taken by another program; set {port_variable}")
    service = ServiceProcess(module, layout.logs / f"{name}.log", env, port=port, port_variable=port_variable)
    service.start(timeout=60)
    assert service.process is not None
    _record(layout, name, service.process.pid, module, url)
    return url


def _start_metrics_job(layout: Layout, env: dict[str, str]) -> str:
    """The Spark job over every running experiment, every ASSAY_METRICS_JOB_EVERY seconds (no HTTP)."""
    every = os.environ.get("ASSAY_METRICS_JOB_EVERY", "300")
    if _running(layout, METRICS_JOB):
        return f"every {every}s"
    command = [sys.executable, "-m", "services.metrics", "run", "--all-running", "--every", every]
    with (layout.logs / f"{METRICS_JOB}.log").open("ab") as log:
        process = subprocess.Popen(command, env={**os.environ, **env}, cwd=REPO, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    _record(layout, METRICS_JOB, process.pid, "services.metrics run", f"every {every}s")
    return f"every {every}s"


def up() -> None:
    layout = layout_from_env()
    layout.logs.mkdir(parents=True, exist_ok=True)
    env = {"ASSAY_ENV": os.environ.get("ASSAY_ENV", "dev"), "ASSAY_DATA_DIR": str(layout.data_dir)}
    env["ASSAY_REDIS_URL"] = _start_redis(layout, env)
    env["ASSAY_KAFKA_BOOTSTRAP"] = _start_broker(layout)
    urls = {"redis": env["ASSAY_REDIS_URL"], "broker": env["ASSAY_KAFKA_BOOTSTRAP"]}
    for name, module, port_variable, default_port in SERVICES:
        urls[name] = _start_service(layout, name, module, port_variable, default_port, env)
    urls[METRICS_JOB] = _start_metrics_job(layout, env)
    if env["ASSAY_ENV"] == "dev" and os.environ.get("ASSAY_DEMO", "1") != "0":
        if has_results(layout.data_dir):
            print("\nThe demo is already seeded (results exist); `make demo` runs it again.")
        else:
            run_demo(urls, layout.data_dir, {**os.environ, **env})
    print(f"\nAssay is running (state and logs under {layout.data_dir})")
    for name, url in urls.items():
        print(f"  {name:<11} {url}")
    print(f"  API docs    {urls['assignment']}/docs  {urls['exposure']}/docs  {urls['scorecard']}/docs")
    print(f"  scorecards  {urls['scorecard']}/experiments")
    if env["ASSAY_ENV"] == "dev":
        print("  keys        admin: dev-admin-key   sdk: dev-sdk-key")
    print("Stop everything with: make down")


def _stop(layout: Layout, name: str) -> None:
    record = _running(layout, name)
    if record is None:
        return
    pid = int(str(record["pid"]))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _cmdline(pid):
        time.sleep(0.1)
    if _cmdline(pid):
        os.kill(pid, signal.SIGKILL)
    layout.pid_file(name).unlink(missing_ok=True)
    print(f"stopped {name} (pid {pid})")


def down() -> None:
    layout = layout_from_env()
    for name in [METRICS_JOB, *reversed([service[0] for service in SERVICES]), "broker", "redis"]:
        _stop(layout, name)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Assay locally without Docker")
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args()
    up() if args.command == "up" else down()


if __name__ == "__main__":
    main()
