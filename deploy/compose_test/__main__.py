"""`python -m deploy.compose_test` (`make compose-test`); see the package docstring."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from deploy.compose_test import flow, scaleout
from deploy.compose_test.compose import Compose, compose_program
from deploy.compose_test.engine import (
    OwnDaemon,
    engine_answers,
    install_tools,
    mount_scratch,
    release_scratch,
    start_own_daemon,
)
from deploy.compose_test.steps import Timings
from deploy.offline.build import archive_reachable, build_image, debian_mirror, download_wheels, make_base

IMAGE, BASE = "assay:compose-test", "assay-base:bookworm"
ADMIN_KEY, SDK_KEY = "compose-test-admin-key-0123456789", "compose-test-sdk-key-0123456789"
UNITS, SCALE_EXPOSURES = 2000, 50_000
CLUSTER_MASTER = "spark://spark-master:7077"


def free_port_pair() -> int:
    """A port p with p and p + 1 both free (exposure's two replicas publish a range)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 65535 and _free(port + 1):
            return int(port)
    raise RuntimeError("no two adjacent free ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def provide_engine(work: Path) -> tuple[OwnDaemon | None, str | None]:
    """(our daemon or None when one was already reachable, None or why none can run)."""
    if shutil.which("docker") and engine_answers(dict(os.environ)):
        return None, None
    reason = install_tools()
    if reason is not None:
        return None, reason
    if os.geteuid() != 0:
        return None, "no Docker engine is reachable and starting dockerd needs root"
    daemon, reason = start_own_daemon(work / "docker")
    if daemon is not None:
        os.environ["DOCKER_HOST"] = f"unix://{daemon.socket}"
    return daemon, reason


def build(timings: Timings, work: Path) -> None:
    if install_tools() is not None or os.geteuid() != 0:
        raise SystemExit("the offline build needs root and debootstrap")
    context = work / "context"
    timings.run("wheels (pip wheel, pinned versions, on the host)", lambda: download_wheels(context / "wheels"))
    timings.run("base image (debootstrap bookworm + docker import)",
                lambda: make_base(work / "rootfs", BASE, debian_mirror()))  # fmt: skip
    timings.run("image build (deploy/offline/Dockerfile)", lambda: build_image(context, IMAGE, BASE))


def compose_env(ports: dict[str, str]) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith(("ASSAY_", "SPARK_"))}
    return {**base, "ASSAY_IMAGE": IMAGE, "ASSAY_ADMIN_KEYS": ADMIN_KEY, "ASSAY_SDK_KEYS": SDK_KEY,
            "ASSAY_ASSIGNMENT_PORT": ports["assignment"], "ASSAY_EXPOSURE_PORT": ports["exposure"],
            "ASSAY_SCORECARD_PORT": ports["scorecard"], "ASSAY_METRICS_INTERVAL_SECONDS": "86400",
            "ASSAY_SECURE_COOKIES": "false", "ASSAY_SPARK_DRIVER_MEMORY": "1g",
            "SPARK_WORKER_MEMORY": "2g"}  # fmt: skip


def stack_urls(compose: Compose) -> flow.Stack:
    exposure = tuple(f"http://127.0.0.1:{port}" for port in compose.published_ports("exposure", 8002))
    return flow.Stack(f"http://127.0.0.1:{compose.env['ASSAY_ASSIGNMENT_PORT']}", exposure,
                      f"http://127.0.0.1:{compose.env['ASSAY_SCORECARD_PORT']}", ADMIN_KEY, SDK_KEY)  # fmt: skip


def up(timings: Timings, name: str, compose: Compose, *scale: str) -> flow.Stack:
    with timings.step(name):
        compose.run("up", "-d", "--no-build", *[part for item in scale for part in ("--scale", item)])
        compose.wait_healthy(timeout=300)
        print(f"  healthy: {sorted(compose.states())}", flush=True)
    return stack_urls(compose)


def default_profile(timings: Timings, compose: Compose) -> tuple[flow.Sent, str, bytes]:
    stack = up(timings, "up (default profile, local[*] Spark)", compose)
    units = [f"e2e-unit-{i}" for i in range(UNITS)]
    with timings.step(f"experiment: create + start, {UNITS} units through /v1/assign/batch, SDK exposures/events"):
        flow.create_and_start(stack)
        sent = flow.send_through_sdk(stack, flow.assign_batch(stack, units))
        print(f"  sent {sent}", flush=True)
    counts = timings.run("ingest: lake holds every exposure and event",
                         lambda: flow.wait_for_lake(compose, "e2e-unit-", sent.exposures, sent.events))  # fmt: skip
    print(f"  lake (rows, distinct ids): {counts}", flush=True)
    as_of = flow.as_of_now()
    document = timings.run("metrics job in metrics-scheduler (local[*])", lambda: flow.run_job(compose, as_of))
    with timings.step("scorecard JSON and HTML against what was sent"):
        flow.check_document(document, sent)
        print(f"  conversion means {flow.check_scorecard(stack, sent)}; page {flow.check_page(stack)} bytes")
    return sent, as_of, document


def scheduler_round_done(compose: Compose, since: float, timeout: float = 600) -> dict[str, object]:
    """Until the scheduler (restarted at `since`) has finished a round successfully."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = compose.run("exec", "-T", "metrics-scheduler", "cat", "/data/metrics-scheduler.json", check=False)
        status = json.loads(raw.stdout) if raw.returncode == 0 and raw.stdout.strip() else {}
        if status.get("started_at", 0) >= since and status.get("last_success_at"):
            return status
        time.sleep(3)
    raise TimeoutError(f"the scheduler finished no round in {timeout:.0f}s:\n{compose.logs('metrics-scheduler')}")


def cluster_profile(timings: Timings, compose: Compose, sent: flow.Sent, as_of: str, local: bytes) -> None:
    since = time.time() - 5
    stack = up(timings, "up --profile cluster (spark-master + 2 workers)", compose, "spark-worker=2")
    timings.run("scheduler's first round on the cluster (its health: last success)",
                lambda: scheduler_round_done(compose, since))  # fmt: skip
    document = timings.run("metrics job on spark://spark-master:7077 beside the scheduler's session",
                           lambda: flow.run_job(compose, as_of))  # fmt: skip
    with timings.step("cluster results document == local one, bar timestamps; scorecard again"):
        flow.check_document(document, sent)
        assert flow.without_timestamps(document) == flow.without_timestamps(local), "documents differ"
        flow.check_scorecard(stack, sent)
        print(f"  {len(document)} bytes, identical apart from *_at fields", flush=True)


def scale_out(timings: Timings, compose: Compose) -> None:
    # Two exposure replicas of two worker processes each: four producers and spool slots.
    compose = dataclasses.replace(compose, env={**compose.env, "ASSAY_EXPOSURE_WORKERS": "2"})
    stack = up(timings, "up --scale exposure=2 (2 workers each) --scale metrics-ingest=2", compose,
               "spark-worker=2", "exposure=2", "metrics-ingest=2")  # fmt: skip
    victim = compose.container_ids("metrics-ingest")[0]

    def restart_one_ingest() -> None:
        subprocess.run(["docker", "restart", "--time", "10", victim], env=compose.env, check=True,
                       capture_output=True)  # fmt: skip
        print(f"  restarted ingest replica {victim[:12]} mid-stream", flush=True)

    with timings.step(f"{SCALE_EXPOSURES} exposures through both exposure replicas, one ingest restarted"):
        per_replica = scaleout.send_through_replicas(stack, SCALE_EXPOSURES, restart_one_ingest)
        print(f"  accepted per exposure replica: {per_replica}", flush=True)
        counted = scaleout.accepted_per_worker_sum(compose)
        slots = scaleout.spool_slots(compose)
        print(f"  accepted per replica as its /metrics adds up its workers: {counted}; spool slots: {slots}",
              flush=True)  # fmt: skip
        assert sorted(counted) == sorted(per_replica.values()), (counted, per_replica)
        assert slots == ["replica-1", "replica-2", "replica-3"], f"4 processes, 4 slots: {slots}"
    counts = timings.run("lake holds each scale-out exposure exactly once",
                         lambda: scaleout.wait_exactly_once(compose, SCALE_EXPOSURES))  # fmt: skip
    print(f"  lake (rows, distinct ids): {counts}; ingest replicas: {scaleout.ingest_snapshots(compose)}")


def teardown(timings: Timings, compose: Compose, daemon: OwnDaemon | None, work: Path, keep_work: bool) -> None:
    with timings.step("teardown (down -v, nothing left, daemon stopped by pid)"):
        compose.down()
        label = f"label=com.docker.compose.project={compose.project}"
        left = {kind: subprocess.run(["docker", kind, "ls", "-aq" if kind == "container" else "-q", "--filter",
                                      label], env=compose.env, capture_output=True, text=True).stdout.split()
                for kind in ("container", "volume", "network")}  # fmt: skip
        print(f"  left behind by the project: {left}", flush=True)
        if daemon is not None:
            daemon.stop()
            daemon.remove_data()
        else:
            subprocess.run(["docker", "image", "rm", IMAGE], env=compose.env, capture_output=True)
        if not keep_work:
            release_scratch(work)
        assert not any(left.values()), f"leftovers: {left}"


def run_all(timings: Timings, compose: Compose, exposure_range: str, skip_cluster: bool, skip_scale: bool) -> None:
    sent, as_of, local = default_profile(timings, compose)
    cluster = dataclasses.replace(compose, profiles=("cluster",),
                                  env={**compose.env, "ASSAY_SPARK_MASTER": CLUSTER_MASTER})  # fmt: skip
    if not skip_cluster:
        cluster_profile(timings, cluster, sent, as_of, local)
    if not skip_scale:
        scale_out(timings, dataclasses.replace(cluster, env={**cluster.env, "ASSAY_EXPOSURE_PORT": exposure_range}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.compose_test", description=__doc__)
    parser.add_argument("--work", type=Path, help="work directory (default: a new temporary one)")
    parser.add_argument("--keep-work", action="store_true", help="keep the wheels and rootfs for a rerun")
    parser.add_argument("--skip-cluster", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args(argv)
    timings = Timings()
    work = args.work or Path(tempfile.mkdtemp(prefix="assay-compose-"))
    if not args.keep_work and mount_scratch(work):
        print(f"[compose-test] work directory {work} on tmpfs (released with one unmount)", flush=True)
    daemon, reason = timings.run("docker engine (reachable, or apt-get + our own dockerd)",
                                 lambda: provide_engine(work))  # fmt: skip
    program = compose_program()
    if reason is None and not archive_reachable(debian_mirror()):
        reason = f"the Debian archive {debian_mirror()} is unreachable, so no base image can be made"
    if reason is not None or program is None:
        print(f"compose-test NOT RUN: {reason or 'no docker-compose'}. Nothing was tested.", flush=True)
        if daemon is not None:
            daemon.stop()
            daemon.remove_data()
        if not args.keep_work:
            release_scratch(work)
        return 0
    exposure = free_port_pair()
    ports = {"assignment": str(free_port_pair()), "scorecard": str(free_port_pair()), "exposure": str(exposure)}
    compose = Compose(program, f"assayct{uuid.uuid4().hex[:6]}", compose_env(ports))
    failed = True
    try:
        build(timings, work)
        run_all(timings, compose, f"{exposure}-{exposure + 1}", args.skip_cluster, args.skip_scale)
        failed = False
    except BaseException:
        print(compose.logs(tail=60), flush=True)
        raise
    finally:
        teardown(timings, dataclasses.replace(compose, profiles=("cluster",)), daemon, work, args.keep_work)
        print(f"[compose-test] {'FAILED' if failed else 'passed'}; step times:\n{timings.table()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
