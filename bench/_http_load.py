"""Closed-loop HTTP load against local servers, and the CPU each process spent on it.

`wrk` (C + LuaJIT) is preferred; a keep-alive asyncio generator is the fallback. Both keep
`connections` HTTP/1.1 keep-alive connections busy, each sending the next POST as soon as
the previous answer arrived, with bodies drawn at random from one list. Both run outside
the server process; on a small machine they still compete with it for CPU, so the CPU
time of every process (from /proc) is recorded beside the throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deploy.embedded import RedisServer
from deploy.processes import ServiceProcess

RESULT_MARKER = "BENCH_RESULT "

# args: path, bodies file. Each wrk thread has its own Lua state, seeded by its id.
WRK_SCRIPT = """
local counter = 0
local bodies = {}
local target = "/"

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  target = args[1]
  for line in io.lines(args[2]) do bodies[#bodies + 1] = line end
  math.randomseed(os.time() * 1000 + id)
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  return wrk.format("POST", target, nil, bodies[math.random(#bodies)])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    "BENCH_RESULT ", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class LoadResult:
    generator: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    generator_cpu_seconds: float = 0.0

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (all threads), from /proc; NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of the live processes in process group `pgid` (a service and its
    worker processes: `ServiceProcess` starts each in a session of its own)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def run_wrk(
    url: str, bodies_path: Path, headers: dict[str, str], *, connections: int, seconds: int,
    threads: int = 1,
) -> LoadResult:  # fmt: skip
    """One wrk run against `url` (scheme://host:port/path); raises if wrk is missing."""
    binary = wrk_binary()
    if binary is None:
        raise FileNotFoundError("wrk is not on PATH (Debian: apt-get install -y wrk)")
    parts = urlsplit(url)
    with tempfile.TemporaryDirectory(prefix="assay-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT)
        command = [
            binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
            "-s", str(script),
            *[arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")],
            f"{parts.scheme}://{parts.netloc}", "--", parts.path, str(bodies_path),
        ]  # fmt: skip
        before = _cpu_seconds(resource.RUSAGE_CHILDREN)
        completed = subprocess.run(command, capture_output=True, text=True, check=True)
        used = _cpu_seconds(resource.RUSAGE_CHILDREN) - before
    return replace(_parse_wrk(completed.stdout), generator_cpu_seconds=used)


def _parse_wrk(stdout: str) -> LoadResult:
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            data = json.loads(line[len(RESULT_MARKER) :])
            return LoadResult(
                "wrk", data["requests"], data["duration_us"] / 1e6, data["errors"],
                data["p50_us"] / 1000, data["p99_us"] / 1000,
            )  # fmt: skip
    raise RuntimeError(f"wrk printed no result line:\n{stdout[-2000:]}")


def build_requests(url: str, bodies: list[bytes], headers: dict[str, str]) -> list[bytes]:
    """Raw HTTP/1.1 keep-alive requests, one per body, built once before timing."""
    parts = urlsplit(url)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    prefix = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}Content-Type: application/json\r\n"
    return [f"{prefix}Content-Length: {len(body)}\r\n\r\n".encode() + body for body in bodies]


@dataclass
class _Tally:
    latencies_ns: list[int]
    errors: int = 0


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head[9:12])


async def _connection(host: str, port: int, requests: list[bytes], deadline: float, tally: _Tally) -> None:
    rng = random.Random()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            payload = rng.choice(requests)
            started = time.perf_counter_ns()
            try:
                writer.write(payload)
                status = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError):
                tally.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            tally.latencies_ns.append(time.perf_counter_ns() - started)
            if status != 200:
                tally.errors += 1
    finally:
        writer.close()


async def _python_load(url: str, requests: list[bytes], connections: int, seconds: float) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    tally = _Tally([])
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_connection(host, port, requests, deadline, tally) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    ordered = sorted(tally.latencies_ns)

    def percentile(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] / 1e6 if ordered else 0.0

    return LoadResult("python-asyncio", len(ordered), elapsed, tally.errors, percentile(0.5), percentile(0.99))


def run_python(
    url: str, bodies: list[bytes], headers: dict[str, str], *, connections: int, seconds: float
) -> LoadResult:
    """The fallback generator; uses uvloop when installed (as the servers do)."""
    requests = build_requests(url, bodies, headers)
    runner: Callable[[Coroutine[Any, Any, LoadResult]], LoadResult] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    before = _cpu_seconds(resource.RUSAGE_SELF)
    result = runner(_python_load(url, requests, connections, seconds))
    return replace(result, generator_cpu_seconds=_cpu_seconds(resource.RUSAGE_SELF) - before)


@dataclass(frozen=True)
class LoadPlan:
    generator: str  # "wrk" or "python-asyncio"
    connections: int
    seconds: int
    warmup_seconds: int
    bodies: list[bytes]
    bodies_path: Path  # the same bodies as JSON lines, for wrk


def apply_load(plan: LoadPlan, url: str, headers: dict[str, str], seconds: int) -> LoadResult:
    if plan.generator == "wrk":
        return run_wrk(url, plan.bodies_path, headers, connections=plan.connections, seconds=seconds)
    return run_python(url, plan.bodies, headers, connections=plan.connections, seconds=seconds)


def measured_load(
    plan: LoadPlan, url: str, headers: dict[str, str], pids: dict[str, int]
) -> tuple[LoadResult, dict[str, float]]:
    """The timed run, with the CPU seconds each process (by role) used during it."""
    before = {role: process_cpu_seconds(pid) for role, pid in pids.items()}
    result = apply_load(plan, url, headers, plan.seconds)
    used = {role: process_cpu_seconds(pid) - before[role] for role, pid in pids.items()}
    return result, {**used, "load generator": result.generator_cpu_seconds}


def pid_of(process: subprocess.Popen[bytes] | None) -> int:
    if process is None:
        raise RuntimeError("the process has not been started")
    return process.pid


@contextlib.contextmanager
def running(service: ServiceProcess) -> Iterator[ServiceProcess]:
    try:
        yield service.start()
    finally:
        service.stop()


@contextlib.contextmanager
def running_redis(data_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()
