"""docker-compose for one project: v1 (`docker-compose`, what Debian ships) or v2 (`docker compose`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OFFLINE_OVERRIDE = REPO / "deploy" / "offline" / "docker-compose.offline.yml"


def compose_program(env: dict[str, str] | None = None) -> list[str] | None:
    """`docker compose` when the v2 plugin answers, else `docker-compose`, else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, env=env)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@dataclass
class Compose:
    program: list[str]
    project: str
    env: dict[str, str]
    files: tuple[Path, ...] = (REPO / "docker-compose.yml", OFFLINE_OVERRIDE)
    profiles: tuple[str, ...] = field(default=())

    def command(self, *args: str) -> list[str]:
        files = [part for path in self.files for part in ("-f", str(path))]
        profiles = [part for name in self.profiles for part in ("--profile", name)]
        return [*self.program, "--project-name", self.project, "--project-directory", str(REPO),
                *files, *profiles, *args]  # fmt: skip

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.command(*args), env=self.env, cwd=REPO, capture_output=True, text=True,
                                timeout=timeout)  # fmt: skip
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:3])} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return result

    def exec(self, service: str, *command: str, index: int = 1, timeout: float = 900) -> str:
        return self.run("exec", "-T", "--index", str(index), service, *command, timeout=timeout).stdout

    def container_ids(self, service: str | None = None) -> list[str]:
        args = ["ps", "-q", *([service] if service else [])]
        return [line for line in self.run(*args).stdout.split() if line]

    def states(self) -> dict[str, dict[str, object]]:
        """Container name -> docker's State (Status, Health, ExitCode) for every container."""
        ids = self.run("ps", "-a", "-q").stdout.split()
        if not ids:
            return {}
        inspected = subprocess.run(["docker", "inspect", *ids], env=self.env, capture_output=True, text=True,
                                   check=True)  # fmt: skip
        return {item["Name"].lstrip("/"): item["State"] for item in json.loads(inspected.stdout)}

    def wait_healthy(self, timeout: float = 300) -> None:
        """Until every running container with a health check is healthy and one-shot containers
        exited 0; names the laggards (with their health log) on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            waiting = {name: state for name, state in states.items() if not _settled(state)}
            failed = {name: state for name, state in states.items() if state["Status"] == "exited"
                      and state.get("ExitCode") != 0}  # fmt: skip
            if failed:
                raise RuntimeError(f"containers failed: {sorted(failed)}\n{self.logs(tail=40)}")
            if not waiting:
                return
            if time.monotonic() > deadline:
                detail = {name: _health_tail(state) for name, state in waiting.items()}
                raise TimeoutError(f"not healthy after {timeout:.0f}s: {detail}\n{self.logs(tail=40)}")
            time.sleep(2)

    def logs(self, *services: str, tail: int = 200) -> str:
        result = self.run("logs", "--no-color", "--tail", str(tail), *services, check=False, timeout=120)
        return result.stdout[-20_000:]

    def published_ports(self, service: str, port: int) -> list[int]:
        """The host ports published for `port` by each replica of `service`."""
        ports = []
        for container in self.container_ids(service):
            answer = subprocess.run(["docker", "port", container, f"{port}/tcp"], env=self.env,
                                    capture_output=True, text=True, check=True)  # fmt: skip
            ports.append(int(answer.stdout.split()[0].rsplit(":", 1)[1]))
        return sorted(ports)

    def down(self) -> None:
        self.run("down", "-v", "--remove-orphans", "--timeout", "20", check=False, timeout=600)


def _settled(state: dict[str, object]) -> bool:
    if state["Status"] == "exited":
        return state.get("ExitCode") == 0
    health = state.get("Health")
    return state["Status"] == "running" and (health is None or health.get("Status") == "healthy")  # type: ignore[attr-defined]


def _health_tail(state: dict[str, object]) -> str:
    health = state.get("Health") or {}
    log = health.get("Log") or []  # type: ignore[attr-defined]
    last = log[-1]["Output"].strip()[-200:] if log else ""
    return f"{state['Status']}/{health.get('Status', '-')}: {last}"  # type: ignore[attr-defined]
