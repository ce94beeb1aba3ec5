"""`python -m bench.assignment` (`make bench`): assignment speed beside its peers, one run.

(a) In-process: `assay.evaluation.evaluate` against the GrowthBook Python SDK's
    `GrowthBook.run(Experiment)` on the same experiment (two targeting rules), over many
    distinct units; median of interleaved repetitions.
(b) Over HTTP: the real assignment service (subprocess, real Redis, sticky lookups) against
    a no-op FastAPI endpoint served by the same uvicorn settings, under the same
    closed-loop load (`wrk`, else an asyncio fallback) from a separate process.

Prints a Markdown report and rewrites the section of docs/benchmarks.md between the
`bench:assignment` markers; the rest of that file is left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import orjson
from assay.evaluation import evaluate
from assay.models import ExperimentConfig
from growthbook import Experiment, GrowthBook

from bench import _http_load as load
from deploy.embedded import RedisServer, redis_server_binary
from deploy.processes import ServiceProcess

EXPERIMENT_KEY = "bench-checkout"
ADMIN_KEY = "dev-admin-key"
SDK_KEY = "dev-sdk-key"
WEIGHTS = (0.5, 0.5)
TRAFFIC = 1.0
TARGETING = [
    {"attribute": "country", "op": "in", "value": ["US", "CA"]},
    {"attribute": "app_version", "op": "semver_gte", "value": "2.0.0"},
]
GROWTHBOOK_CONDITION = {"country": {"$in": ["US", "CA"]}, "app_version": {"$vgte": "2.0.0"}}
REASON_LINE = re.compile(r'^assay_assignments_total\{reason="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE)
DEGRADED_LINE = re.compile(r"^assay_assign_degraded_total ([0-9.e+]+)$", re.MULTILINE)


def unit_attributes(index: int) -> dict[str, Any]:
    """Deterministic attributes: ~86% of units pass both rules, the rest fail one."""
    if index % 10 == 0:
        return {"country": "DE", "app_version": "2.4.0"}
    version = "1.9.4" if index % 25 == 7 else f"2.{index % 7}.{index % 3}"
    return {"country": "US" if index % 2 else "CA", "app_version": version}


# --- (a) in-process evaluation ------------------------------------------------------


@dataclass(frozen=True)
class InProcessResult:
    assay_us: float
    growthbook_reused_us: float
    growthbook_new_us: float
    units: int
    repetitions: int
    enrollment_agreement: float


def assay_config() -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "key": EXPERIMENT_KEY, "salt": EXPERIMENT_KEY, "traffic": TRAFFIC, "targeting": TARGETING,
        "variants": [{"key": "control", "weight": WEIGHTS[0]}, {"key": "treatment", "weight": WEIGHTS[1]}],
    })  # fmt: skip


def growthbook_experiment() -> Experiment[str]:
    # hashVersion 2 is what GrowthBook gives new experiments; no tracking callback is set.
    return Experiment(
        key=EXPERIMENT_KEY, variations=["control", "treatment"], weights=list(WEIGHTS),
        coverage=TRAFFIC, condition=GROWTHBOOK_CONDITION, hashAttribute="id", hashVersion=2,
    )  # fmt: skip


def _microseconds_per_call(loop: Callable[[], None], calls: int) -> float:
    gc.collect()
    started = time.perf_counter_ns()
    loop()
    return (time.perf_counter_ns() - started) / calls / 1000


def _loops(units: int) -> dict[str, Callable[[], None]]:
    config, experiment = assay_config(), growthbook_experiment()
    assay_units = [(f"user-{i}", unit_attributes(i)) for i in range(units)]
    growthbook_units = [{"id": unit_id, **attributes} for unit_id, attributes in assay_units]
    shared = GrowthBook()

    def assay() -> None:
        for unit_id, attributes in assay_units:
            evaluate(config, unit_id, attributes)

    def growthbook_reused() -> None:
        for attributes in growthbook_units:
            shared.set_attributes(attributes)
            shared.run(experiment)

    def growthbook_new() -> None:
        for attributes in growthbook_units:
            GrowthBook(attributes=attributes).run(experiment)

    return {"assay": assay, "growthbook_reused": growthbook_reused, "growthbook_new": growthbook_new}


def enrollment_agreement(units: int) -> float:
    """Share of units both SDKs agree to enroll or not (variants differ: other hashes)."""
    config, experiment = assay_config(), growthbook_experiment()
    agree = 0
    for i in range(units):
        attributes = unit_attributes(i)
        assay_in = evaluate(config, f"user-{i}", attributes).variant is not None
        agree += assay_in == GrowthBook(attributes={"id": f"user-{i}", **attributes}).run(experiment).inExperiment
    return agree / units


def run_inprocess(units: int, repetitions: int) -> InProcessResult:
    """Interleaved repetitions (A, B, C, A, B, C, ...) after one warm-up pass each."""
    loops = _loops(units)
    for loop in loops.values():
        loop()
    samples: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repetitions):
        for name, loop in loops.items():
            samples[name].append(_microseconds_per_call(loop, units))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return InProcessResult(
        medians["assay"], medians["growthbook_reused"], medians["growthbook_new"], units, repetitions,
        enrollment_agreement(min(units, 5000)),
    )  # fmt: skip


# --- (b) /v1/assign over HTTP ---------------------------------------------------------


@dataclass(frozen=True)
class HttpTarget:
    name: str
    result: load.LoadResult
    reasons: dict[str, int]
    degraded: int
    sample_reasons: dict[str, int]
    cpu_seconds: dict[str, float]  # CPU used in the measured window, by process role


def unit_bodies(pool: int) -> list[bytes]:
    return [
        orjson.dumps({"unit_id": f"u-{i:05d}", "attributes": unit_attributes(i), "experiments": [EXPERIMENT_KEY]})
        for i in range(pool)
    ]


def create_running_experiment(base_url: str) -> None:
    body = {
        "key": EXPERIMENT_KEY, "name": "Benchmark checkout", "owner": "bench", "traffic": TRAFFIC,
        "variants": [{"key": "control", "weight": WEIGHTS[0]}, {"key": "treatment", "weight": WEIGHTS[1]}],
        "targeting": TARGETING,
    }  # fmt: skip
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10) as admin:
        admin.post("/v1/experiments", json=body).raise_for_status()
        admin.post(f"/v1/experiments/{EXPERIMENT_KEY}/status", json={"status": "running"}).raise_for_status()


def preassign(base_url: str, bodies: list[bytes], batch: int = 1000) -> Counter[str]:
    """Assign every unit of the pool once, so the timed calls are sticky lookups."""
    units = [orjson.loads(body) for body in bodies]
    reasons: Counter[str] = Counter()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {SDK_KEY}"}, timeout=30) as sdk:
        for start in range(0, len(units), batch):
            chunk = [{"unit_id": u["unit_id"], "attributes": u["attributes"]} for u in units[start:start + batch]]
            reply = sdk.post("/v1/assign/batch", json={"units": chunk, "experiments": [EXPERIMENT_KEY]})
            reply.raise_for_status()
            reasons.update(r["assignments"][EXPERIMENT_KEY]["reason"] for r in reply.json()["results"])
    return reasons


def sample_reasons(base_url: str, bodies: list[bytes], size: int) -> dict[str, int]:
    """Reasons of `size` random single calls, read from the answers themselves."""
    reasons: Counter[str] = Counter()
    headers = {"Authorization": f"Bearer {SDK_KEY}", "Content-Type": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as sdk:
        for body in random.sample(bodies, size):
            reply = sdk.post("/v1/assign", content=body)
            ok = reply.status_code == 200
            reasons[reply.json()["assignments"][EXPERIMENT_KEY]["reason"] if ok else f"HTTP {reply.status_code}"] += 1
    return dict(reasons)


def scrape_counters(base_url: str) -> tuple[dict[str, float], float]:
    """(decisions by reason, degraded answers) from the service's Prometheus metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    reasons = {reason: float(value) for reason, value in REASON_LINE.findall(text)}
    degraded = DEGRADED_LINE.search(text)
    return reasons, float(degraded.group(1)) if degraded else 0.0


@dataclass(frozen=True)
class LoadPlan:
    generator: str  # "wrk" or "python-asyncio"
    connections: int
    seconds: int
    warmup_seconds: int
    bodies: list[bytes]
    bodies_path: Path


def apply_load(plan: LoadPlan, url: str, headers: dict[str, str], seconds: int) -> load.LoadResult:
    if plan.generator == "wrk":
        return load.run_wrk(url, plan.bodies_path, headers, connections=plan.connections, seconds=seconds)
    return load.run_python(url, plan.bodies, headers, connections=plan.connections, seconds=seconds)


def measured_load(
    plan: LoadPlan, url: str, headers: dict[str, str], pids: dict[str, int]
) -> tuple[load.LoadResult, dict[str, float]]:
    """The timed run, with the CPU each process (server, Redis) used during it."""
    before = {role: load.process_cpu_seconds(pid) for role, pid in pids.items()}
    result = apply_load(plan, url, headers, plan.seconds)
    used = {role: load.process_cpu_seconds(pid) - before[role] for role, pid in pids.items()}
    return result, {**used, "load generator": result.generator_cpu_seconds}


def _pid(process: subprocess.Popen[bytes] | None) -> int:
    assert process is not None, "the process was started above"
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


def assignment_service(redis_url: str, logs: Path) -> ServiceProcess:
    env = {
        "ASSAY_ENV": "dev", "ASSAY_ADMIN_KEYS": "", "ASSAY_SDK_KEYS": "", "ASSAY_REDIS_URL": redis_url,
        "ASSAY_ACCESS_LOG": "false", "ASSAY_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    return ServiceProcess("services.assignment", logs / "assignment.log", env, port_variable="ASSAY_ASSIGNMENT_PORT")


def measure_assignment(plan: LoadPlan, workdir: Path, sample_size: int) -> HttpTarget:
    headers = {"Authorization": f"Bearer {SDK_KEY}"}
    with running_redis(workdir / "redis") as redis, running(assignment_service(redis.url, workdir)) as service:
        create_running_experiment(service.base_url)
        first = preassign(service.base_url, plan.bodies)
        progress(f"pre-assigned {len(plan.bodies)} units: {dict(first)}")
        url = f"{service.base_url}/v1/assign"
        apply_load(plan, url, headers, plan.warmup_seconds)
        before, degraded_before = scrape_counters(service.base_url)
        pids = {"server": _pid(service.process), "Redis": _pid(redis.process)}
        result, cpu = measured_load(plan, url, headers, pids)
        after, degraded_after = scrape_counters(service.base_url)
        sample = sample_reasons(service.base_url, plan.bodies, sample_size)
    reasons = {k: round(v - before.get(k, 0.0)) for k, v in after.items() if v > before.get(k, 0.0)}
    degraded = round(degraded_after - degraded_before)
    return HttpTarget("Assay `POST /v1/assign` (sticky)", result, reasons, degraded, sample, cpu)


def measure_noop(plan: LoadPlan, workdir: Path) -> HttpTarget:
    service = ServiceProcess("bench.noop_app", workdir / "noop.log", port_variable="ASSAY_NOOP_PORT")
    with running(service):
        url = f"{service.base_url}/v1/assign"
        apply_load(plan, url, {}, plan.warmup_seconds)
        result, cpu = measured_load(plan, url, {}, {"server": _pid(service.process)})
    return HttpTarget("no-op FastAPI `POST /v1/assign`", result, {}, 0, {}, cpu)


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- report -----------------------------------------------------------------------------

DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION_START = "<!-- bench:assignment:start -->"
SECTION_END = "<!-- bench:assignment:end -->"
DOCS_HEADER = "# Benchmarks\n\nEvery figure below is measured beside its peers in the same run.\n"
EVALUATION_AIM = 5.0
THROUGHPUT_AIM = 0.60
P99_AIM_MS = 20.0


def _command_output(command: list[str], cwd: Path | None = None) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (completed.stdout or completed.stderr).strip().splitlines()[0] if (completed.stdout or completed.stderr) else "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_facts(generator: str, load_at_start: tuple[float, float, float]) -> dict[str, str]:
    repo = DOCS_PATH.parent.parent
    commit = _command_output(["git", "rev-parse", "--short", "HEAD"], repo)
    dirty = subprocess.run(["git", "diff-index", "--quiet", "HEAD", "--"], cwd=repo, capture_output=True).returncode
    packages = ", ".join(f"{name} {metadata.version(name)}" for name in ("growthbook", "fastapi", "uvicorn", "pydantic", "redis"))
    return {
        "machine": f"{os.cpu_count()} logical cores, {_cpu_model()}; {platform.platform()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": commit + (" (working tree has uncommitted changes)" if dirty else ""),
        "packages": packages,
        "Redis": _command_output([redis_server_binary(), "--version"]),
        "load generator": _command_output(["wrk", "-v"]) if generator == "wrk" else "Python asyncio fallback (wrk not found)",
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load average (1 min) at start / end": f"{load_at_start[0]:.2f} / {os.getloadavg()[0]:.2f} "
        "(anything else running on the box competes with the benchmark)",
    }


def _verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def render_inprocess(result: InProcessResult) -> list[str]:
    growthbook_best = min(result.growthbook_reused_us, result.growthbook_new_us)
    ratio = growthbook_best / result.assay_us
    rows = [
        ("Assay `evaluate(config, unit_id, attributes)`", result.assay_us),
        ("GrowthBook: one instance, `gb.set_attributes(a); gb.run(exp)` per unit", result.growthbook_reused_us),
        ("GrowthBook: `GrowthBook(attributes=a).run(exp)` per unit", result.growthbook_new_us),
    ]
    return [
        "### In-process evaluation: one experiment, two targeting rules",
        "",
        f"{result.units:,} distinct units per pass, one warm-up pass, median of {result.repetitions} "
        "interleaved passes (`time.perf_counter_ns`, GC enabled). Rules: `country in [US, CA]` and "
        "`app_version semver_gte 2.0.0` (GrowthBook: `$in` and `$vgte`); weights 50/50, traffic "
        "(coverage) 1.0; GrowthBook `hashVersion=2`, no tracking callback, no sticky bucketing. "
        f"The two SDKs agree on enrollment for {result.enrollment_agreement:.1%} of units.",
        "",
        "| implementation | µs / evaluation | × Assay's time |",
        "|---|---:|---:|",
        *[f"| {name} | {micros:.2f} | {micros / result.assay_us:.2f}× |" for name, micros in rows],
        "",
        f"GrowthBook's cheaper idiom / Assay = **{ratio:.2f}×** (aim ≥ {EVALUATION_AIM:.0f}×: {_verdict(ratio >= EVALUATION_AIM)}).",
    ]


def _reasons_text(reasons: dict[str, int]) -> str:
    total = sum(reasons.values())
    if not total:
        return "none"
    return ", ".join(f"{reason} {count:,} ({count / total:.1%})" for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]))


def _http_row(target: HttpTarget) -> str:
    result, cpu = target.result, target.cpu_seconds

    def per_request(role: str) -> str:
        return f"{cpu[role] / result.requests * 1e6:,.0f}" if role in cpu and result.requests else "–"

    def busy(role: str) -> str:
        return f"{cpu[role] / result.seconds:.0%}" if role in cpu else "–"

    return (
        f"| {target.name} | {result.requests_per_second:,.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f} | "
        f"{result.errors} | {result.requests:,} | {per_request('server')} ({busy('server')}) | "
        f"{per_request('Redis')} ({busy('Redis')}) | {busy('load generator')} |"
    )


def render_http(assign: HttpTarget, noop: HttpTarget, plan: LoadPlan) -> list[str]:
    share = assign.result.requests_per_second / noop.result.requests_per_second
    met = share >= THROUGHPUT_AIM and assign.result.p99_ms < P99_AIM_MS
    return [
        "### `POST /v1/assign` over HTTP, sticky lookups",
        "",
        f"{plan.connections} keep-alive connections, closed loop, {plan.warmup_seconds} s warm-up then "
        f"{plan.seconds} s measured per target, load from `{plan.generator}` in its own process. "
        f"Each server is one uvicorn process (uvloop, httptools, access log off); the load generator and "
        "Redis share the same cores with it, so these are figures for the whole box, not for the "
        f"server alone. Bodies are drawn at random from {len(plan.bodies):,} units that were all assigned "
        "once beforehand; every call to Assay does one Redis `EVALSHA` round trip.",
        "",
        "| target | requests/s | p50 ms | p99 ms | errors | requests | server CPU µs/request (busy) "
        "| Redis CPU µs/request (busy) | load generator CPU busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        _http_row(noop),
        _http_row(assign),
        "",
        f"Assay / no-op throughput = **{share:.1%}**, Assay p99 = **{assign.result.p99_ms:.2f} ms** "
        f"(aim ≥ {THROUGHPUT_AIM:.0%} with p99 < {P99_AIM_MS:.0f} ms: {_verdict(met)}).",
        "",
        f"Reasons of every decision in the measured window (service metrics): {_reasons_text(assign.reasons)}; "
        f"degraded answers: {assign.degraded}. Reasons in a sample of {sum(assign.sample_reasons.values()):,} "
        f"answers read afterwards: {_reasons_text(assign.sample_reasons)}.",
    ]


def render_report(
    inprocess: InProcessResult, assign: HttpTarget, noop: HttpTarget, plan: LoadPlan,
    load_at_start: tuple[float, float, float],
) -> str:  # fmt: skip
    facts = machine_facts(plan.generator, load_at_start)
    return "\n".join([
        "## Assignment",
        "",
        "Reproduce: `make bench` (or `.venv/bin/python -m bench.assignment`). Generated; do not edit by hand.",
        "",
        *[f"- {name}: {value}" for name, value in facts.items()],
        "",
        *render_inprocess(inprocess),
        "",
        *render_http(assign, noop, plan),
    ])  # fmt: skip


def rewrite_docs(section: str, path: Path = DOCS_PATH) -> None:
    """Replace the text between the markers, keeping everything else in the file."""
    block = f"{SECTION_START}\n{section.rstrip()}\n{SECTION_END}"
    text = path.read_text() if path.exists() else DOCS_HEADER
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        text = head + block + rest.split(SECTION_END, 1)[1]
    else:
        text = f"{text.rstrip()}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- entry point -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.assignment", description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=20_000, help="distinct units per in-process pass")
    parser.add_argument("--repetitions", type=int, default=7, help="in-process passes per implementation")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=15, help="measured seconds per HTTP target")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up seconds per HTTP target")
    parser.add_argument("--pool", type=int, default=50_000, help="distinct units sent over HTTP")
    parser.add_argument("--sample", type=int, default=1000, help="answers read back to check reasons")
    parser.add_argument("--load-generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-docs", action="store_true", help=f"do not rewrite {DOCS_PATH.name}")
    return parser.parse_args(argv)


def choose_generator(wanted: str) -> str:
    if wanted == "python":
        return "python-asyncio"
    if load.wrk_binary() is not None:
        return "wrk"
    if wanted == "wrk":
        raise SystemExit("wrk is not on PATH; install it (Debian: apt-get install -y wrk) or pass --load-generator python")
    progress("wrk is not on PATH (Debian: apt-get install -y wrk): using the slower Python asyncio generator")
    return "python-asyncio"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = os.getloadavg()
    generator = choose_generator(args.load_generator)
    progress(f"in-process: {args.repetitions} passes of {args.units:,} units per implementation")
    inprocess = run_inprocess(args.units, args.repetitions)
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as tmp:
        workdir = Path(tmp)
        bodies = unit_bodies(args.pool)
        (workdir / "bodies.jsonl").write_bytes(b"\n".join(bodies) + b"\n")
        plan = LoadPlan(generator, args.connections, args.seconds, args.warmup, bodies, workdir / "bodies.jsonl")
        progress(f"HTTP: assignment service + Redis, {generator}, {args.connections} connections")
        assign = measure_assignment(plan, workdir, args.sample)
        progress("HTTP: no-op FastAPI app")
        noop = measure_noop(plan, workdir)
    report = render_report(inprocess, assign, noop, plan, load_at_start)
    print(report)
    if not args.no_docs:
        rewrite_docs(report)
        progress(f"rewrote the assignment section of {DOCS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
