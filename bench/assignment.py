"""`python -m bench.assignment` (`make bench`): assignment speed beside its peers, in one run.

(a) In-process: `assay.evaluation.evaluate` against the GrowthBook Python SDK's
    `GrowthBook.run(Experiment)` on the same experiment (two targeting rules), over many
    distinct units; median of interleaved passes.
(b) Over HTTP: the real assignment service (subprocess, real Redis, sticky lookups) against
    a no-op FastAPI endpoint served with the same uvicorn settings, under the same
    closed-loop load (`wrk`, else an asyncio fallback) from a separate process.

Prints a Markdown report and rewrites the part of docs/benchmarks.md between the
`bench:assignment` markers; the rest of that file is left alone.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import mmh3
import orjson
from assay.bucketing import variant_bucket
from assay.evaluation import evaluate
from assay.models import ExperimentConfig
from growthbook import Experiment, GrowthBook

from bench import _http_load as load
from bench._report import DOCS_PATH, RunStart, first_line, machine, rewrite_section, run_start
from deploy.embedded import redis_server_binary
from deploy.processes import ServiceProcess

EXPERIMENT_KEY = "bench-checkout"
ADMIN_KEY = "dev-admin-key"
SDK_KEY = "dev-sdk-key"
VARIANT_WEIGHTS = {"control": 0.5, "treatment": 0.5}
VARIANTS = [{"key": key, "weight": weight} for key, weight in VARIANT_WEIGHTS.items()]
TRAFFIC = 1.0
TARGETING = [
    {"attribute": "country", "op": "in", "value": ["US", "CA"]},
    {"attribute": "app_version", "op": "semver_gte", "value": "2.0.0"},
]
GROWTHBOOK_CONDITION = {"country": {"$in": ["US", "CA"]}, "app_version": {"$vgte": "2.0.0"}}
REASON_LINE = re.compile(r'^assay_assignments_total\{reason="(\w+)"\} (\S+)$', re.MULTILINE)
DEGRADED_LINE = re.compile(r"^assay_assign_degraded_total (\S+)$", re.MULTILINE)


def unit_attributes(index: int) -> dict[str, Any]:
    """Deterministic attributes: 86% of units pass both rules, the rest fail one of them."""
    if index % 10 == 0:
        return {"country": "DE", "app_version": "2.4.0"}
    version = "1.9.4" if index % 25 == 7 else f"2.{index % 7}.{index % 3}"
    return {"country": "US" if index % 2 else "CA", "app_version": version}


# --- (a) in-process evaluation ----------------------------------------------------------


@dataclass(frozen=True)
class InProcessResult:
    assay_us: float
    bare_hash_us: float
    bucket_call_us: float
    growthbook_reused_us: float
    growthbook_new_us: float
    units: int
    repetitions: int
    enrollment_agreement: float


def assay_config() -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "key": EXPERIMENT_KEY, "salt": EXPERIMENT_KEY, "variants": VARIANTS, "traffic": TRAFFIC,
        "targeting": TARGETING,
    })  # fmt: skip


def growthbook_experiment() -> Experiment[str]:
    # hashVersion 2 is what GrowthBook gives new experiments; no tracking callback is set.
    return Experiment(
        key=EXPERIMENT_KEY, variations=list(VARIANT_WEIGHTS), weights=list(VARIANT_WEIGHTS.values()),
        coverage=TRAFFIC, condition=GROWTHBOOK_CONDITION, hashAttribute="id", hashVersion=2,
    )  # fmt: skip


def evaluation_loops(units: int) -> dict[str, Callable[[], None]]:
    """One pass over `units` distinct units per implementation; inputs are built here."""
    config, experiment = assay_config(), growthbook_experiment()
    assay_units = [(f"user-{i}", unit_attributes(i)) for i in range(units)]
    growthbook_units = [{"id": unit_id, **attributes} for unit_id, attributes in assay_units]
    shared = GrowthBook()

    def assay() -> None:
        for unit_id, attributes in assay_units:
            evaluate(config, unit_id, attributes)

    salt = config.salt

    def bare_hash() -> None:
        # The floor: one variant bucket, no targeting, no variant lookup, no result object.
        for unit_id, _ in assay_units:
            mmh3.hash(f"{salt}:{unit_id}", 0, signed=False) % 10_000

    def bucket_call() -> None:
        for unit_id, _ in assay_units:
            variant_bucket(salt, unit_id)

    def growthbook_reused() -> None:
        for attributes in growthbook_units:
            shared.set_attributes(attributes)
            shared.run(experiment)

    def growthbook_new() -> None:
        for attributes in growthbook_units:
            GrowthBook(attributes=attributes).run(experiment)

    return {"assay": assay, "bare_hash": bare_hash, "bucket_call": bucket_call, "growthbook_reused": growthbook_reused,
            "growthbook_new": growthbook_new}  # fmt: skip


def enrollment_agreement(units: int) -> float:
    """Share of units both SDKs agree to enroll or not (variants differ: other hashes)."""
    config, experiment = assay_config(), growthbook_experiment()
    agree = 0
    for i in range(units):
        attributes = unit_attributes(i)
        assay_enrolls = evaluate(config, f"user-{i}", attributes).variant is not None
        growthbook = GrowthBook(attributes={"id": f"user-{i}", **attributes})
        agree += assay_enrolls == growthbook.run(experiment).inExperiment
    return agree / units


def microseconds_per_call(loop: Callable[[], None], calls: int) -> float:
    gc.collect()
    started = time.perf_counter_ns()
    loop()
    return (time.perf_counter_ns() - started) / calls / 1000


def run_inprocess(units: int, repetitions: int) -> InProcessResult:
    """Interleaved passes (A, B, C, A, B, C, ...) after one warm-up pass each."""
    loops = evaluation_loops(units)
    for loop in loops.values():
        loop()
    samples: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repetitions):
        for name, loop in loops.items():
            samples[name].append(microseconds_per_call(loop, units))
    median = {name: statistics.median(values) for name, values in samples.items()}
    return InProcessResult(
        median["assay"], median["bare_hash"], median["bucket_call"], median["growthbook_reused"],
        median["growthbook_new"], units, repetitions, enrollment_agreement(min(units, 5000)),
    )  # fmt: skip


# --- (b) /v1/assign over HTTP -----------------------------------------------------------


@dataclass(frozen=True)
class HttpTarget:
    name: str
    result: load.LoadResult
    cpu_seconds: dict[str, float]  # spent during the measured window, by process role
    reasons: dict[str, int]  # decisions during the measured window, from /metrics
    degraded: int
    sample_reasons: dict[str, int]  # read from answers after the run
    batch: load.LoadResult | None = None  # /v1/assign/batch of BATCH_UNITS units


BATCH_UNITS = 100
BATCH_CONNECTIONS = 8


def batch_bodies(pool: int, count: int = 500) -> list[bytes]:
    """`/v1/assign/batch` bodies of BATCH_UNITS units drawn from the same (pre-assigned) pool."""
    draw = random.Random(16)
    bodies = []
    for _ in range(count):
        units = [{"unit_id": f"u-{i:05d}", "attributes": unit_attributes(i)}
                 for i in draw.sample(range(pool), BATCH_UNITS)]  # fmt: skip
        bodies.append(orjson.dumps({"units": units, "experiments": [EXPERIMENT_KEY]}))
    return bodies


def measure_batch(plan: load.LoadPlan, base_url: str, headers: dict[str, str]) -> load.LoadResult:
    path = plan.bodies_path.with_name("batch-bodies.jsonl")
    bodies = batch_bodies(len(plan.bodies))
    path.write_bytes(b"\n".join(bodies) + b"\n")
    batch_plan = load.LoadPlan(plan.generator, BATCH_CONNECTIONS, max(5, plan.seconds // 2), 2, bodies, path)
    url = f"{base_url}/v1/assign/batch"
    load.apply_load(batch_plan, url, headers, batch_plan.warmup_seconds)
    return load.apply_load(batch_plan, url, headers, batch_plan.seconds)


def unit_bodies(pool: int) -> list[bytes]:
    return [
        orjson.dumps({"unit_id": f"u-{i:05d}", "attributes": unit_attributes(i), "experiments": [EXPERIMENT_KEY]})
        for i in range(pool)
    ]


def client(base_url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def create_running_experiment(base_url: str) -> None:
    body = {
        "key": EXPERIMENT_KEY, "name": "Benchmark checkout", "owner": "bench",
        "variants": VARIANTS, "traffic": TRAFFIC, "targeting": TARGETING,
    }  # fmt: skip
    with client(base_url, ADMIN_KEY) as admin:
        admin.post("/v1/experiments", json=body).raise_for_status()
        running_body = {"status": "running", "reason": "benchmark"}
        admin.post(f"/v1/experiments/{EXPERIMENT_KEY}/status", json=running_body).raise_for_status()


def preassign(base_url: str, bodies: list[bytes], batch: int = 1000) -> Counter[str]:
    """Assign every unit of the pool once, so that the timed calls are sticky lookups."""
    units = [orjson.loads(body) for body in bodies]
    reasons: Counter[str] = Counter()
    with client(base_url, SDK_KEY) as sdk:
        for start in range(0, len(units), batch):
            chunk = [{k: u[k] for k in ("unit_id", "attributes")} for u in units[start : start + batch]]
            reply = sdk.post("/v1/assign/batch", json={"units": chunk, "experiments": [EXPERIMENT_KEY]})
            reply.raise_for_status()
            reasons.update(r["assignments"][EXPERIMENT_KEY]["reason"] for r in reply.json()["results"])
    return reasons


def sample_reasons(base_url: str, bodies: list[bytes], size: int) -> dict[str, int]:
    """Reasons in `size` random single calls, read from the answers themselves."""
    reasons: Counter[str] = Counter()
    with client(base_url, SDK_KEY) as sdk:
        for body in random.sample(bodies, min(size, len(bodies))):
            reply = sdk.post("/v1/assign", content=body, headers={"Content-Type": "application/json"})
            if reply.status_code != 200:
                reasons[f"HTTP {reply.status_code}"] += 1
                continue
            reasons[reply.json()["assignments"][EXPERIMENT_KEY]["reason"]] += 1
    return dict(reasons)


def scrape_counters(base_url: str) -> tuple[dict[str, float], float]:
    """(decisions by reason, degraded answers) from the service's Prometheus metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    reasons = {reason: float(value) for reason, value in REASON_LINE.findall(text)}
    degraded = DEGRADED_LINE.search(text)
    return reasons, float(degraded.group(1)) if degraded else 0.0


def assignment_service(redis_url: str, workdir: Path) -> ServiceProcess:
    env = {
        "ASSAY_ENV": "dev", "ASSAY_ADMIN_KEYS": "", "ASSAY_SDK_KEYS": "",
        "ASSAY_REDIS_URL": redis_url, "ASSAY_ACCESS_LOG": "false", "ASSAY_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    return ServiceProcess("services.assignment", workdir / "assignment.log", env, port_variable="ASSAY_ASSIGNMENT_PORT")


def combine(rounds: list[tuple[load.LoadResult, dict[str, float]]]) -> tuple[load.LoadResult, dict[str, float]]:
    """Rounds of one target as one result: summed requests and CPU, median p50 and p99."""
    results = [result for result, _ in rounds]
    cpu: dict[str, float] = {}
    for _, used in rounds:
        for role, seconds in used.items():
            cpu[role] = cpu.get(role, 0.0) + seconds
    combined = load.LoadResult(
        results[0].generator, sum(r.requests for r in results), sum(r.seconds for r in results),
        sum(r.errors for r in results), statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results), sum(r.generator_cpu_seconds for r in results),
    )  # fmt: skip
    return combined, cpu


def measure_side_by_side(
    plan: load.LoadPlan, workdir: Path, sample_size: int, rounds: int
) -> tuple[HttpTarget, HttpTarget, list[tuple[float, float]]]:
    """Both servers up at once, `rounds` alternating timed windows each (Assay, no-op, Assay,
    ...), so that other jobs on the box weigh on both alike. Also returns each round's
    (throughput ratio, p99 ratio)."""
    headers = {"Authorization": f"Bearer {SDK_KEY}"}
    noop_service = ServiceProcess("bench.noop_app", workdir / "noop.log", port_variable="ASSAY_NOOP_PORT")
    window = replace(plan, seconds=max(1, plan.seconds // rounds))
    with (
        load.running_redis(workdir / "redis") as redis,
        load.running(assignment_service(redis.url, workdir)) as service,
        load.running(noop_service) as noop,
    ):
        create_running_experiment(service.base_url)
        first = preassign(service.base_url, plan.bodies)
        progress(f"pre-assigned {len(plan.bodies):,} units: {dict(first)}")
        url, noop_url = f"{service.base_url}/v1/assign", f"{noop.base_url}/v1/assign"
        load.apply_load(plan, url, headers, plan.warmup_seconds)
        load.apply_load(plan, noop_url, {}, plan.warmup_seconds)
        before, degraded_before = scrape_counters(service.base_url)
        pids = {"server": load.pid_of(service.process), "Redis": load.pid_of(redis.process)}
        assay_rounds, noop_rounds = [], []
        for number in range(rounds):
            progress(f"HTTP round {number + 1} of {rounds}: Assay, then the no-op")
            assay_rounds.append(load.measured_load(window, url, headers, pids))
            noop_rounds.append(load.measured_load(window, noop_url, {}, {"server": load.pid_of(noop.process)}))
        after, degraded_after = scrape_counters(service.base_url)
        sample = sample_reasons(service.base_url, plan.bodies, sample_size)
        progress(f"HTTP: /v1/assign/batch of {BATCH_UNITS} units, {BATCH_CONNECTIONS} connections")
        batch = measure_batch(plan, service.base_url, headers)
    reasons = {k: round(v - before.get(k, 0.0)) for k, v in after.items() if v > before.get(k, 0.0)}
    degraded = round(degraded_after - degraded_before)
    per_round = [
        (a.requests_per_second / n.requests_per_second, a.p99_ms / n.p99_ms)
        for (a, _), (n, _) in zip(assay_rounds, noop_rounds, strict=True)
    ]
    assay = HttpTarget("Assay `POST /v1/assign`", *combine(assay_rounds), reasons, degraded, sample, batch)
    noop_target = HttpTarget("no-op FastAPI `POST /v1/assign`", *combine(noop_rounds), {}, 0, {})
    return assay, noop_target, per_round


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- report -----------------------------------------------------------------------------

EVALUATION_AIM = 15.0  # GrowthBook's run() / Assay's evaluate, at least
BARE_HASH_AIM = 2.0  # Assay's evaluate / a bare mmh3 bucket, at most
THROUGHPUT_AIM = 0.80  # Assay / no-op requests per second, at least
P99_AIM = 1.5  # Assay's p99 / the no-op's, at most


def machine_facts(generator: str, start: RunStart) -> dict[str, str]:
    names = ("growthbook", "fastapi", "starlette", "uvicorn", "uvloop", "pydantic", "redis")
    return {
        "machine": machine(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "commit": start.commit,
        "packages": ", ".join(f"{name} {metadata.version(name)}" for name in names),
        "Redis": first_line([redis_server_binary(), "--version"]),
        "load generator": first_line(["wrk", "-v"]) if generator == "wrk"
        else "Python asyncio fallback (wrk was not on PATH)",
        "1-minute load average at start / end": f"{start.load_average:.2f} / {os.getloadavg()[0]:.2f}",
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }  # fmt: skip


def verdict(met: bool) -> str:
    return "**met**" if met else "**missed**"


def render_inprocess(result: InProcessResult) -> list[str]:
    best_growthbook = min(result.growthbook_reused_us, result.growthbook_new_us)
    ratio = best_growthbook / result.assay_us
    over_hash = result.assay_us / result.bare_hash_us
    rows = [
        ("Assay `evaluate(config, unit_id, attributes)`", result.assay_us),
        ('bare `mmh3.hash(f"{salt}:{unit_id}", 0, signed=False) % 10_000` (the floor)', result.bare_hash_us),
        ("the same as a function call: `assay.bucketing.variant_bucket(salt, unit_id)`", result.bucket_call_us),
        ("GrowthBook, one instance: `gb.set_attributes(a); gb.run(exp)`", result.growthbook_reused_us),
        ("GrowthBook, one instance per unit: `GrowthBook(attributes=a).run(exp)`", result.growthbook_new_us),
    ]
    return [
        "### In-process evaluation: one experiment, two targeting rules",
        "",
        f"{result.units:,} distinct units per pass, one warm-up pass, median of {result.repetitions} "
        "interleaved passes (`time.perf_counter_ns`, GC on). Rules `country in [US, CA]` and "
        "`app_version semver_gte 2.0.0` (GrowthBook: `$in`, `$vgte`), weights 50/50, traffic "
        "(coverage) 1.0; GrowthBook `hashVersion=2`, no tracking callback, no sticky bucketing. "
        f"The SDKs agree on enrollment for {result.enrollment_agreement:.1%} of units.",
        "",
        "| implementation | µs / evaluation | × Assay |",
        "|---|---:|---:|",
        *[f"| {name} | {micros:.2f} | {micros / result.assay_us:.2f} |" for name, micros in rows],
        "",
        f"GrowthBook (its cheaper idiom) / Assay = **{ratio:.2f}×** "
        f"(aim ≥ {EVALUATION_AIM:.0f}×: {verdict(ratio >= EVALUATION_AIM)}); Assay / bare hash = "
        f"**{over_hash:.2f}×** (aim ≤ {BARE_HASH_AIM:.0f}×: {verdict(over_hash <= BARE_HASH_AIM)}).",
    ]


def reasons_text(reasons: dict[str, int]) -> str:
    total = sum(reasons.values())
    ordered = sorted(reasons.items(), key=lambda item: -item[1])
    return ", ".join(f"{reason} {count:,} ({count / total:.1%})" for reason, count in ordered) or "none"


def http_row(target: HttpTarget) -> str:
    result, cpu = target.result, target.cpu_seconds

    def cost(role: str) -> str:
        if role not in cpu or not result.requests:
            return "–"
        return f"{cpu[role] / result.requests * 1e6:,.0f} ({cpu[role] / result.seconds:.0%})"

    return (
        f"| {target.name} | {result.requests_per_second:,.0f} | {result.p50_ms:.2f} | "
        f"{result.p99_ms:.2f} | {result.errors} | {result.requests:,} | {cost('server')} | "
        f"{cost('Redis')} | {cpu['load generator'] / result.seconds:.0%} |"
    )


def cpu_share(noop: HttpTarget, assign: HttpTarget) -> float:
    def per_request(target: HttpTarget) -> float:
        return target.cpu_seconds["server"] / max(target.result.requests, 1)

    return per_request(noop) / per_request(assign)


def spread(values: list[float], fmt: str) -> str:
    return " / ".join(format(value, fmt) for value in values)


def render_http(
    assign: HttpTarget, noop: HttpTarget, plan: load.LoadPlan, per_round: list[tuple[float, float]]
) -> list[str]:
    share = assign.result.requests_per_second / noop.result.requests_per_second
    tail = assign.result.p99_ms / noop.result.p99_ms
    return [
        "### `POST /v1/assign` over HTTP: sticky lookups against a no-op endpoint",
        "",
        f"{plan.connections} keep-alive connections, closed loop, {plan.warmup_seconds} s warm-up, "
        f"then {plan.seconds} s measured per target in {len(per_round)} alternating rounds (Assay, "
        "no-op, Assay, ...; both servers stay up, so other jobs on the box weigh on both alike); "
        f"p50 and p99 are medians of the rounds. Load from `{plan.generator}` (one thread) in "
        "its own process. Each server is one uvicorn process (uvloop, httptools, access log off). "
        "**The load generator and Redis run on the same 2 cores as the server**, so throughput "
        "is the whole box's; the CPU columns (µs of CPU per request, and the share of one core "
        "in use) separate the processes. Bodies come at random from "
        f"{len(plan.bodies):,} units, each assigned once beforehand; every Assay call makes one "
        "Redis round trip unless the process's cache of stored assignments answers it (a stored "
        "assignment never changes); the round trips of concurrent requests are coalesced into one "
        "pipeline per event-loop tick.",
        "",
        "| target | requests/s | p50 ms | p99 ms | errors | requests | server CPU µs/request "
        "(core busy) | Redis CPU µs/request (busy) | load generator busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        http_row(noop),
        http_row(assign),
        "",
        f"Assay / no-op throughput = **{share:.1%}** (aim ≥ {THROUGHPUT_AIM:.0%}: "
        f"{verdict(share >= THROUGHPUT_AIM)}); Assay p99 / no-op p99 = **{tail:.2f}×** "
        f"(aim ≤ {P99_AIM}×: {verdict(tail <= P99_AIM)}). Round by round: throughput "
        f"{spread([r for r, _ in per_round], '.1%')}, p99 {spread([t for _, t in per_round], '.2f')}×. "
        "Server CPU per "
        f"request, no-op / Assay = **{cpu_share(noop, assign):.1%}**: the throughput ratio to expect "
        "when both servers have a core to themselves, and steadier than the measured one when other "
        "jobs share the box.",
        "",
        f"Decisions in the measured window (service metrics): {reasons_text(assign.reasons)}; "
        f"degraded answers: {assign.degraded}. In {sum(assign.sample_reasons.values()):,} answers "
        f"sampled afterwards: {reasons_text(assign.sample_reasons)}.",
        *render_batch(assign.batch),
    ]


def render_batch(result: load.LoadResult | None) -> list[str]:
    if result is None:
        return []
    return [
        "",
        f"`POST /v1/assign/batch` of {BATCH_UNITS} units (same pool, {BATCH_CONNECTIONS} connections, "
        f"{result.seconds:.0f} s): **{result.requests_per_second * BATCH_UNITS:,.0f} units/s** "
        f"({result.requests_per_second:,.1f} requests/s, p50 {result.p50_ms:.1f} ms, p99 "
        f"{result.p99_ms:.1f} ms, {result.errors} errors).",
    ]


def render_report(
    inprocess: InProcessResult, assign: HttpTarget, noop: HttpTarget, plan: load.LoadPlan,
    per_round: list[tuple[float, float]], start: RunStart,
) -> str:  # fmt: skip
    facts = machine_facts(plan.generator, start)
    return "\n".join([
        "## Assignment",
        "",
        "Reproduce with `make bench` (or `.venv/bin/python -m bench.assignment`); this section "
        "is rewritten by that command.",
        "",
        *[f"- {name}: {value}" for name, value in facts.items()],
        "",
        *render_inprocess(inprocess),
        "",
        *render_http(assign, noop, plan, per_round),
    ])  # fmt: skip


# --- entry point ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.assignment", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add = parser.add_argument
    add("--units", type=int, default=20_000, help="distinct units per in-process pass")
    add("--repetitions", type=int, default=7, help="in-process passes per implementation")
    add("--connections", type=int, default=32, help="concurrent HTTP connections")
    add("--seconds", type=int, default=15, help="measured seconds per HTTP target (over all rounds)")
    add("--rounds", type=int, default=3, help="alternating timed windows per HTTP target")
    add("--warmup", type=int, default=5, help="warm-up seconds per HTTP target")
    add("--pool", type=int, default=50_000, help="distinct units sent over HTTP")
    add("--sample", type=int, default=1000, help="answers read back to check reasons")
    add("--load-generator", choices=("auto", "wrk", "python"), default="auto")
    add("--no-docs", action="store_true", help=f"do not rewrite {DOCS_PATH.name}")
    return parser.parse_args(argv)


def choose_generator(wanted: str) -> str:
    if wanted == "python":
        return "python-asyncio"
    if load.wrk_binary() is not None:
        return "wrk"
    hint = "wrk is not on PATH (Debian: apt-get install -y wrk)"
    if wanted == "wrk":
        raise SystemExit(f"{hint}; or pass --load-generator python")
    progress(f"{hint}: falling back to the slower Python asyncio load generator")
    return "python-asyncio"


def run_http(
    args: argparse.Namespace, generator: str
) -> tuple[HttpTarget, HttpTarget, load.LoadPlan, list[tuple[float, float]]]:
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as tmp:
        workdir = Path(tmp)
        bodies = unit_bodies(args.pool)
        bodies_path = workdir / "bodies.jsonl"
        bodies_path.write_bytes(b"\n".join(bodies) + b"\n")
        plan = load.LoadPlan(generator, args.connections, args.seconds, args.warmup, bodies, bodies_path)
        progress(f"HTTP: assignment service + Redis beside the no-op, {generator}, {args.connections} connections")
        assign, noop, per_round = measure_side_by_side(plan, workdir, args.sample, args.rounds)
    return assign, noop, plan, per_round


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = run_start()
    generator = choose_generator(args.load_generator)
    progress(f"in-process: {args.repetitions} passes of {args.units:,} units per implementation")
    inprocess = run_inprocess(args.units, args.repetitions)
    assign, noop, plan, per_round = run_http(args, generator)
    report = render_report(inprocess, assign, noop, plan, per_round, start)
    print(report)
    if not args.no_docs:
        rewrite_section("assignment", report)
        progress(f"rewrote the assignment section of {DOCS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
