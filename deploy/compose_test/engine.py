"""A Docker engine for the compose test: the one already reachable, or our own `dockerd`.

Our own daemon gets its own socket, data root, exec root and pid file under one work
directory (`--iptables=false`: nothing on the host's firewall changes), and is stopped by
its pid; its data root goes with it, so no image, container or volume outlives the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PACKAGES = {"dockerd": "docker.io", "docker-compose": "docker-compose", "debootstrap": "debootstrap"}


def engine_answers(env: dict[str, str]) -> bool:
    try:
        probe = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], env=env,
                               capture_output=True, text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and bool(probe.stdout.strip())


def missing_tools() -> list[str]:
    return [tool for tool in (*PACKAGES, "docker") if shutil.which(tool) is None]


def install_tools() -> str | None:
    """apt-get install what is missing; None when done, else why it could not be."""
    missing = missing_tools()
    if not missing:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{', '.join(missing)} missing and cannot be installed here (needs root and apt-get)"
    packages = sorted({PACKAGES.get(tool, "docker.io") for tool in missing})
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        result = subprocess.run(install, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            return f"apt-get install {' '.join(packages)} failed: {result.stderr.strip()[-300:]}"
    still = missing_tools()
    return f"still missing after apt-get: {', '.join(still)}" if still else None


@dataclass
class OwnDaemon:
    """`dockerd` on its own socket, data root, exec root and pid file under `work`."""

    work: Path
    storage_driver: str = "overlay2"
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.work / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.work / "dockerd.pid"

    @property
    def log(self) -> Path:
        return self.work / "dockerd.log"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def command(self) -> list[str]:
        return ["dockerd", "--host", f"unix://{self.socket}", "--data-root", str(self.work / "data"),
                "--exec-root", str(self.work / "exec"), "--pidfile", str(self.pidfile),
                "--iptables=false", "--storage-driver", self.storage_driver]  # fmt: skip

    def start(self, timeout: float = 60.0) -> str | None:
        """None when the daemon answers, else why not (its log's tail)."""
        self.work.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if engine_answers(self.env):
                return None
            time.sleep(0.5)
        self.stop()
        return f"dockerd ({self.storage_driver}) did not come up: {self.log.read_text()[-600:]}"

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return self.process.pid if self.process is not None and self.process.poll() is None else None

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM by pid (dockerd stops its containers and containerd), SIGKILL if it hangs."""
        pid = self.pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pid = None
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def remove_data(self) -> None:
        """Unmount what the daemon left mounted under its directory (e.g. its netns), then delete it."""
        for mount in reversed(mounts_under(self.work)):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def mounts_under(directory: Path) -> list[str]:
    prefix = f"{directory.resolve()}/"
    with open("/proc/mounts") as table:
        points = [line.split()[1] for line in table]
    return sorted(point for point in points if point.startswith(prefix))


def start_own_daemon(work: Path) -> tuple[OwnDaemon | None, str | None]:
    """overlay2 first, vfs (slow, but works on any filesystem) when overlay2 cannot start."""
    reasons: list[str] = []
    for driver in ("overlay2", "vfs"):
        daemon = OwnDaemon(work / driver, storage_driver=driver)
        reason = daemon.start()
        if reason is None:
            if driver != "overlay2":
                print(f"  overlay2 failed, using the vfs storage driver: {reasons[0][:300]}", flush=True)
            return daemon, None
        daemon.remove_data()
        reasons.append(reason)
    return None, " | ".join(reasons)


def mount_scratch(work: Path, size: str = "20g") -> bool:
    """A tmpfs over the work directory (as root): the daemon's data root, the rootfs and the
    wheels go with one unmount instead of minutes of unlinking on a discard-heavy disk."""
    if os.geteuid() != 0:
        return False
    work.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "assay-compose-test", str(work)]
    return subprocess.run(command, capture_output=True).returncode == 0


def release_scratch(work: Path) -> None:
    for mount in reversed(mounts_under(work)):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    subprocess.run(["umount", "-l", str(work)], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
