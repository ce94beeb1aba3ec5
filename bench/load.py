"""`python -m bench.load` (in `make bench`): a mixed workload against the whole local stack at
a fixed rate for five minutes (a soak), the way product apps and experiment owners use it.

The stack is `python -m deploy.local up` (what `make up` runs: Redis, the Tansu broker, the
assignment, exposure and scorecard services, metrics ingest; the demo seeds scorecards) on
free ports in a temporary directory. The periodic Spark job is pushed out of the window
(`ASSAY_METRICS_JOB_EVERY`), so the figures are the request path's.

Load is open loop: each stream sends its requests on a fixed schedule whether or not earlier
answers have arrived, and latency is measured from the *scheduled* send time, so a stall
shows up in p99 instead of silently lowering the rate (no coordinated omission).

Reported: per endpoint, requests sent, errors (non-2xx or no answer within 10 s), p50/p99/max
latency; resident memory of every process of the stack after the warm-up and at the end;
and whether every accepted exposure and event reached the Parquet lake.

Prints a Markdown report and rewrites the part of docs/benchmarks.md between the `bench:load`
markers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._report import DOCS_PATH, machine, rewrite_section, run_start
from deploy.embedded import free_port

REPO = Path(__file__).resolve().parent.parent
ADMIN_KEY, SDK_KEY = "dev-admin-key", "dev-sdk-key"  # the dev keys `make up` runs with
EXPERIMENT = "load-soak"
SCORECARD_EXPERIMENT = "checkout-button"  # seeded by the demo
PORTS = ("REDIS", "BROKER", "ASSIGNMENT", "EXPOSURE", "SCORECARD", "METRICS")
REQUEST_TIMEOUT = 10.0
MAX_IN_FLIGHT = 256  # per stream; beyond it a scheduled request counts as an error
MEMORY_EVERY = 10.0


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the stack --------------------------------------------------------------------------


@dataclass
class Stack:
    env: dict[str, str]
    data_dir: Path
    ports: dict[str, int]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def pids(self) -> dict[str, int]:
        """Every long-running process `deploy.local` recorded (name -> pid)."""
        found = {}
        for path in sorted((self.data_dir / "pids").glob("*.json")):
            found[path.stem] = int(json.loads(path.read_text())["pid"])
        return found


@contextlib.contextmanager
def local_stack(workdir: Path) -> Iterator[Stack]:
    ports = {name: free_port() for name in PORTS}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSAY_")}
    env.update({f"ASSAY_{name}_PORT": str(port) for name, port in ports.items()})
    env.update(ASSAY_DATA_DIR=str(workdir), ASSAY_METRICS_JOB_EVERY="86400", ASSAY_ACCESS_LOG="false")
    runner = [sys.executable, "-m", "deploy.local"]
    progress("starting the local stack with the demo (about two minutes)")
    started = subprocess.run([*runner, "up"], env=env, cwd=REPO, capture_output=True, text=True, timeout=1200)
    try:
        if started.returncode != 0:
            raise SystemExit(f"`deploy.local up` failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}")
        yield Stack(env, workdir, ports)
    finally:
        subprocess.run([*runner, "down"], env=env, cwd=REPO, capture_output=True, timeout=180)


def create_experiment(stack: Stack) -> None:
    body = {"key": EXPERIMENT, "name": "Soak test", "metrics": {"primary": ["conversion"]},
            "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=stack.url("ASSIGNMENT"), headers=headers, timeout=30) as admin:
        admin.post("/v1/experiments", json=body).raise_for_status()
        admin.post(f"/v1/experiments/{EXPERIMENT}/status", json={"status": "running"}).raise_for_status()
    time.sleep(2)  # the exposure service's config cache learns of it


def session_cookie(stack: Stack) -> dict[str, str]:
    with httpx.Client(base_url=stack.url("SCORECARD"), timeout=30) as browser:
        browser.post("/login", data={"key": ADMIN_KEY, "next": "/experiments"})
        return dict(browser.cookies)


# --- the workload -----------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """One kind of request, sent `rate` times a second."""

    name: str
    service: str
    method: str
    path: str
    rate: float
    role: str  # "sdk", "admin" or "browser"
    body: Callable[[random.Random], dict[str, Any]] | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


def unit(rng: random.Random, pool: int) -> str:
    return f"soak-{rng.randrange(pool)}"


def streams(scale: float, pool: int, batch: int) -> list[Stream]:
    def assign(rng: random.Random) -> dict[str, Any]:
        return {"experiments": [EXPERIMENT], "unit_id": unit(rng, pool), "attributes": {"country": "US"}}

    def assign_batch(rng: random.Random) -> dict[str, Any]:
        return {"units": [{"unit_id": unit(rng, pool)} for _ in range(20)], "experiments": [EXPERIMENT]}

    def exposures(rng: random.Random) -> dict[str, Any]:
        items = [{"experiment": EXPERIMENT, "variant": rng.choice(("control", "treatment")),
                  "unit_id": unit(rng, pool), "timestamp": now_ms()} for _ in range(batch)]  # fmt: skip
        return {"exposures": items}

    def events(rng: random.Random) -> dict[str, Any]:
        items = [{"name": "purchase", "unit_id": unit(rng, pool), "value": round(rng.uniform(1, 80), 2),
                  "timestamp": now_ms()} for _ in range(batch)]  # fmt: skip
        return {"events": items}

    scorecard = f"/v1/experiments/{SCORECARD_EXPERIMENT}/scorecard"
    return [
        Stream("POST /v1/assign", "ASSIGNMENT", "POST", "/v1/assign", 100 * scale, "sdk", assign),
        Stream("POST /v1/assign/batch (20 units)", "ASSIGNMENT", "POST", "/v1/assign/batch", 10 * scale, "sdk",
               assign_batch),
        Stream(f"POST /v1/exposures ({batch} items)", "EXPOSURE", "POST", "/v1/exposures", 20 * scale, "sdk",
               exposures),
        Stream(f"POST /v1/events ({batch} items)", "EXPOSURE", "POST", "/v1/events", 20 * scale, "sdk", events),
        Stream(f"GET {scorecard}", "SCORECARD", "GET", scorecard, 3 * scale, "admin"),
        Stream(f"GET /experiments/{SCORECARD_EXPERIMENT} (HTML)", "SCORECARD", "GET",
               f"/experiments/{SCORECARD_EXPERIMENT}", 1 * scale, "browser"),
    ]  # fmt: skip


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    items_accepted: int = 0

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())

    @property
    def errors(self) -> int:
        return sum(count for outcome, count in self.outcomes.items() if not outcome.startswith("2"))


async def one_request(client: httpx.AsyncClient, stream: Stream, body: dict[str, Any] | None,
                      scheduled: float, tally: Tally) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        response = await client.request(stream.method, stream.path, json=body, timeout=REQUEST_TIMEOUT)
        outcome = str(response.status_code)
        if response.status_code == 202:
            tally.items_accepted += int(response.json().get("accepted", 0))
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    tally.latencies_ms.append((loop.time() - scheduled) * 1000)
    tally.outcomes[outcome] += 1


async def run_stream(client: httpx.AsyncClient, stream: Stream, start: float, seconds: float, seed: int,
                     tally: Tally) -> None:  # fmt: skip
    loop, rng = asyncio.get_running_loop(), random.Random(seed)
    in_flight: set[asyncio.Task[None]] = set()
    for index in range(int(seconds * stream.rate)):
        scheduled = start + index / stream.rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= MAX_IN_FLIGHT:
            tally.outcomes["not sent: generator backlog"] += 1
            continue
        body = stream.body(rng) if stream.body else None
        task = asyncio.create_task(one_request(client, stream, body, scheduled, tally))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)


def clients(stack: Stack, cookies: dict[str, str]) -> dict[tuple[str, str], httpx.AsyncClient]:
    # Idle connections are dropped before uvicorn's 5 s keep-alive ends, so a reused one is never
    # closed under a request by the server (a client-side race, not a service error).
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)
    made = {}
    for service in ("ASSIGNMENT", "EXPOSURE", "SCORECARD"):
        for role, headers in (("sdk", {"Authorization": f"Bearer {SDK_KEY}"}),
                              ("admin", {"Authorization": f"Bearer {ADMIN_KEY}"}), ("browser", {})):  # fmt: skip
            made[(service, role)] = httpx.AsyncClient(
                base_url=stack.url(service), headers=headers, limits=limits,
                cookies=cookies if role == "browser" else None,
            )  # fmt: skip
    return made


async def run_workload(stack: Stack, plan: list[Stream], seconds: float, cookies: dict[str, str]) -> dict[str, Tally]:
    made = clients(stack, cookies)
    tallies = {stream.name: Tally() for stream in plan}
    try:
        start = asyncio.get_running_loop().time() + 0.5
        await asyncio.gather(*(
            run_stream(made[(s.service, s.role)], s, start, seconds, seed, tallies[s.name])
            for seed, s in enumerate(plan)
        ))  # fmt: skip
    finally:
        for client in made.values():
            await client.aclose()
    return tallies


# --- memory and delivery ----------------------------------------------------------------


def rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def sample_memory(pids: dict[str, int]) -> dict[str, float]:
    return {name: rss for name, pid in pids.items() if (rss := rss_mib(pid)) is not None}


async def watch_memory(pids: dict[str, int], until: float, samples: list[tuple[float, dict[str, float]]]) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        samples.append((loop.time(), sample_memory(pids)))
        await asyncio.sleep(MEMORY_EVERY)
    samples.append((loop.time(), sample_memory(pids)))


def counter(url: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    wanted = f"{name}{{{selector}}}" if selector else name
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


@dataclass(frozen=True)
class Delivery:
    accepted: dict[str, int]
    landed: dict[str, int]
    seconds_to_land: float | None


def lake_counts(stack: Stack) -> dict[str, int]:
    counters = httpx.get(f"{stack.url('METRICS')}/healthz", timeout=10).json()["counters"]
    return {"exposures": int(counters["exposures"]), "events": int(counters["events"])}


def accepted_counts(stack: Stack) -> dict[str, int]:
    url = stack.url("EXPOSURE")
    return {kind: int(counter(url, "assay_exposure_items_accepted_total", kind=label))
            for kind, label in (("exposures", "exposure"), ("events", "event"))}  # fmt: skip


def wait_for_lake(stack: Stack, before: dict[str, int], accepted: dict[str, int], timeout: float) -> Delivery:
    """Until ingest has landed at least as many records as the service accepted during the run."""
    started = time.monotonic()
    while True:
        landed = {kind: count - before[kind] for kind, count in lake_counts(stack).items()}
        if all(landed[kind] >= accepted[kind] for kind in accepted):
            return Delivery(accepted, landed, time.monotonic() - started)
        if time.monotonic() - started > timeout:
            return Delivery(accepted, landed, None)
        time.sleep(1)


# --- report -----------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def stream_row(stream: Stream, tally: Tally, seconds: float) -> str:
    errors = tally.errors
    rate = f"{stream.rate:g}"
    share = f"{100 * errors / tally.sent:.2f}%" if tally.sent else "n/a"
    outcomes = ", ".join(f"{k}: {v:,}" for k, v in sorted(tally.outcomes.items()))
    return (f"| `{stream.name}` | {rate} | {tally.sent / seconds:.1f} | {tally.sent:,} | {errors:,} ({share}) "
            f"| {percentile(tally.latencies_ms, 0.5):.1f} | {percentile(tally.latencies_ms, 0.99):.1f} "
            f"| {max(tally.latencies_ms, default=float('nan')):.0f} | {outcomes} |")  # fmt: skip


def memory_rows(samples: list[tuple[float, dict[str, float]]], warmup_end: float) -> list[str]:
    settled = [memory for at, memory in samples if at >= warmup_end] or [samples[-1][1]]
    first, last = settled[0], settled[-1]
    rows = []
    for name in sorted(last):
        series = [memory[name] for memory in settled if name in memory]
        change = last[name] - first.get(name, last[name])
        rows.append(f"| {name} | {first.get(name, float('nan')):.1f} | {last[name]:.1f} | {max(series):.1f} "
                    f"| {change:+.1f} ({100 * change / first.get(name, last[name]):+.1f}%) |")  # fmt: skip
    return rows


def memory_series(samples: list[tuple[float, dict[str, float]]], warmup_end: float) -> list[str]:
    """RSS once a minute from the end of the warm-up: a plateau and a leak look different."""
    settled = [(at - warmup_end, memory) for at, memory in samples if at >= warmup_end]
    if not settled:
        return []
    picks, next_minute = [], 0.0
    for offset, memory in settled:
        if offset >= next_minute:
            picks.append((offset, memory))
            next_minute += 60.0
    if picks[-1][0] != settled[-1][0]:
        picks.append(settled[-1])
    header = "| process | " + " | ".join(f"{offset / 60:.1f} min" for offset, _ in picks) + " |"
    rows = [header, "|---|" + "---:|" * len(picks)]
    for name in sorted(settled[-1][1]):
        rows.append(f"| {name} | " + " | ".join(f"{memory.get(name, float('nan')):.1f}" for _, memory in picks) + " |")
    return rows


def render(plan: list[Stream], tallies: dict[str, Tally], seconds: float, warmup: float,
           samples: list[tuple[float, dict[str, float]]], warmup_end: float, delivery: Delivery,
           facts: dict[str, str], command: str) -> str:  # fmt: skip
    total_sent = sum(t.sent for t in tallies.values())
    total_errors = sum(t.errors for t in tallies.values())
    landed = ", ".join(
        f"{kind}: {delivery.accepted[kind]:,} accepted, {delivery.landed[kind]:,} landed" for kind in delivery.accepted
    )
    when = (f"all landed within {delivery.seconds_to_land:.0f} s of the end of the load"
            if delivery.seconds_to_land is not None else "**NOT all landed** within the wait")  # fmt: skip
    lines = [
        "## Mixed-workload soak of the whole stack (`bench/load.py`)",
        "",
        f"`{command}`: {seconds:.0f} s of fixed-rate, open-loop load (after {warmup:.0f} s of warm-up at the same",
        "rates) against `deploy.local up` (the `make up` stack with the demo), every process on this one box",
        "together with the load generator (Python, httpx).",
        "Latency is from each request's *scheduled* send time to its answer, so stalls are not hidden.",
        "",
        *[f"- {name}: {value}" for name, value in facts.items()],
        "",
        f"**Errors: {total_errors:,} of {total_sent:,} requests ({100 * total_errors / max(1, total_sent):.3f}%).**",
        "",
        "| endpoint | target req/s | achieved req/s | sent | errors | p50 ms | p99 ms | max ms | answers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *[stream_row(stream, tallies[stream.name], seconds) for stream in plan],
        "",
        f"**Delivery to the lake** (exposure service counters against ingest counters): {landed}; {when}.",
        "",
        f"Resident memory (MiB) after the warm-up and at the end, sampled every {MEMORY_EVERY:.0f} s:",
        "",
        "| process | after warm-up | end | max | change |",
        "|---|---:|---:|---:|---:|",
        *memory_rows(samples, warmup_end),
        "",
        "The same, minute by minute (MiB):",
        "",
        *memory_series(samples, warmup_end),
    ]
    return "\n".join(lines)


# --- entry point ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add = parser.add_argument
    add("--seconds", type=float, default=300, help="measured seconds of load")
    add("--warmup", type=float, default=30, help="seconds of load before measuring")
    add("--scale", type=float, default=1.0, help="multiply every stream's rate")
    add("--pool", type=int, default=20_000, help="distinct units the load draws from")
    add("--batch", type=int, default=50, help="items per exposure/event request")
    add("--no-docs", action="store_true", help=f"do not rewrite {DOCS_PATH.name}")
    return parser.parse_args(argv)


async def soak(stack: Stack, args: argparse.Namespace) -> tuple[dict[str, Tally], list[Any], float]:
    plan = streams(args.scale, args.pool, args.batch)
    cookies = session_cookie(stack)
    loop = asyncio.get_running_loop()
    samples: list[tuple[float, dict[str, float]]] = []
    warmup_end = loop.time() + args.warmup
    watcher = asyncio.create_task(watch_memory(stack.pids(), warmup_end + args.seconds, samples))
    if args.warmup:
        progress(f"warming up for {args.warmup:.0f} s")
        await run_workload(stack, plan, args.warmup, cookies)
    progress(f"measuring for {args.seconds:.0f} s")
    tallies = await run_workload(stack, plan, args.seconds, cookies)
    await watcher
    return tallies, samples, warmup_end


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = run_start()
    with tempfile.TemporaryDirectory(prefix="assay-load-") as tmp, local_stack(Path(tmp)) as stack:
        create_experiment(stack)
        lake_before = lake_counts(stack)
        accepted_before = accepted_counts(stack)
        tallies, samples, warmup_end = asyncio.run(soak(stack, args))
        accepted = {k: v - accepted_before[k] for k, v in accepted_counts(stack).items()}
        progress("waiting for ingest to land what was accepted")
        delivery = wait_for_lake(stack, lake_before, accepted, timeout=120)
    plan = streams(args.scale, args.pool, args.batch)
    facts = {
        "machine": machine(),
        "commit": start.commit,
        "1-minute load average at start / end": f"{start.load_average:.2f} / {os.getloadavg()[0]:.2f}",
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    command = "python -m bench.load" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    report = render(plan, tallies, args.seconds, args.warmup, samples, warmup_end, delivery, facts, command)
    print(report)
    if not args.no_docs:
        rewrite_section("load", report)
        progress(f"rewrote the load section of {DOCS_PATH}")


if __name__ == "__main__":
    main()
