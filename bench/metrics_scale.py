"""`python -m bench.metrics_scale`: the metrics job at platform scale, in one run.

(a) K concurrent experiments over the same population and events: one lake with
    max(K) experiments (each exposes a random 60% of the units, first exposures spread
    over 14 days, ~2% duplicate rows, ~1% late exposures), then `run --experiments` for
    the first K of them, K = 1, 8, 32: the job time against K (one pass for all K).
(b) a rerun after +1% new events (a tenth of them late, for days already frozen), for the
    largest K: the run before it publishes and keeps its state in a state directory, the
    rerun starts from that state (incremental), and a run from scratch over the same final
    lake (no state) gives both the time to beat and the documents the rerun must equal.
    As-of is the same fixed instant for every run, so the timeline does not move and the
    rerun can stay incremental; its experiments compute the catalog's additive metrics (a
    quantile metric sends an experiment to a full recompute; `--rerun-all-metrics` keeps it).

Each measurement runs in a fresh worker process; job time excludes the JVM start-up,
shown apart. Workload (a) runs `--rounds` rounds (the Ks in turn, round after round) and
reports each K's median: one process's first pass varies by several percent. Prints a
Markdown section (it does not write docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.metrics import AS_OF, DAYS, EVENT_NAMES, START, _ids, _times, _with_copies, _write_partitions
from services.common.catalog import DEFAULT_CATALOG, load_catalog
from services.metrics import lake
from services.metrics.job.batch import RunStats, compute_pass, read_stats, run_experiments
from services.metrics.job.run import ExperimentSpec, JobOptions
from services.metrics.job.spark import build_session
from services.metrics.job.timeline import DAY_US, HOUR_US, parse_instant
from services.metrics.settings import MetricsSettings


def experiment_key(index: int) -> str:
    return f"exp-{index:02d}"


def _exposures(rng: np.random.Generator, lake_dir: Path, units: int, key: str) -> int:
    exposed = np.flatnonzero(rng.random(units) < 0.6)
    first = parse_instant(START) + rng.integers(0, DAYS * DAY_US - DAY_US, exposed.size)
    variant = rng.integers(0, 2, exposed.size)
    rows, received = _with_copies(rng, first, 0.01)
    _write_partitions(pa.table({
        "event_id": _ids(f"{key}-x", rows), "experiment": pa.array([key] * rows.size),
        "variant": pa.array(np.where(variant[rows] == 0, "control", "treatment")),
        "unit_id": _ids("u", exposed[rows]), "timestamp": _times(first[rows]), "received_at": _times(received),
        "attributes": pa.nulls(rows.size, lake.ATTRIBUTES_TYPE),
        "kafka_partition": pa.array(np.zeros(rows.size, np.int32)), "kafka_offset": pa.array(np.arange(rows.size)),
    }, schema=lake.EXPOSURE_SCHEMA), lake.EXPOSURES_TOPIC, lake_dir, key)  # fmt: skip
    return int(rows.size)


def _events(rng: np.random.Generator, lake_dir: Path, units: int, events: int, prefix: str,
            received_at: np.ndarray | None = None, ts: np.ndarray | None = None) -> int:  # fmt: skip
    unit = rng.integers(0, units, events)
    names = rng.choice(3, events, p=[0.6, 0.3, 0.1])
    if ts is None:
        ts = parse_instant(START) + rng.integers(-14 * DAY_US, (DAYS + 1) * DAY_US, events)
        ts = np.minimum(ts, parse_instant(AS_OF) - DAY_US)
    value = np.where(names == 2, np.round(rng.lognormal(3.0, 0.6, events), 2), np.round(rng.gamma(4.0, 75.0, events)))
    rows, received = _with_copies(rng, ts, 0.03)
    if received_at is not None:
        received = received_at[rows]
    table = pa.table({
        "event_id": _ids(prefix, rows), "name": pa.array(EVENT_NAMES[names[rows]]),
        "unit_id": _ids("u", unit[rows]), "timestamp": _times(ts[rows]), "received_at": _times(received),
        "value": pa.array(np.where(names[rows] == 0, np.nan, value[rows]), from_pandas=True),
        "properties": pa.nulls(rows.size, pa.string()),
        "kafka_partition": pa.array(np.ones(rows.size, np.int32)), "kafka_offset": pa.array(np.arange(rows.size)),
    }, schema=lake.EVENT_SCHEMA)  # fmt: skip
    _write_partitions_new(table, lake_dir)
    return int(rows.size)


def _write_partitions_new(table: pa.Table, lake_dir: Path) -> None:
    """Like the ingest: a new file in each date partition (never a rewrite)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    days = pc.cast(table["timestamp"], pa.int64()).to_numpy() // DAY_US
    for day in np.unique(days):
        moment = datetime.fromtimestamp(int(day) * 86_400, UTC).date()
        path = lake.partition_dir(lake_dir, lake.EVENTS_TOPIC, moment) / lake.new_file_name()
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(pa.array(days == day)), path)


def synthetic_lake(lake_dir: Path, events: int, experiments: int, seed: int = 5) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    units = max(events // 20, 10)
    exposure_rows = sum(_exposures(rng, lake_dir, units, experiment_key(i)) for i in range(experiments))
    return {"units": units, "exposure_rows": exposure_rows, "event_rows": _events(rng, lake_dir, units, events, "e")}


def add_one_percent(lake_dir: Path, events: int, seed: int = 6) -> int:
    """+1% events in new files: 90% recent (the last two days), 10% late for frozen days."""
    rng = np.random.default_rng(seed)
    units, count, as_of = max(events // 20, 10), max(events // 100, 1), parse_instant(AS_OF)
    late = rng.random(count) < 0.1
    ts = np.where(late, parse_instant(START) + rng.integers(0, 5 * DAY_US, count),
                  as_of - rng.integers(DAY_US, 2 * DAY_US, count))  # fmt: skip
    received = np.minimum(np.where(late, as_of - 2 * HOUR_US, ts + 60_000_000), as_of - HOUR_US)
    return _events(rng, lake_dir, units, count, "plus", received_at=received, ts=ts)


def run_worker(lake_dir: Path, k: int, out: Path) -> None:
    specs = [ExperimentSpec(experiment_key(i), ("control", "treatment")) for i in range(k)]
    options, started = JobOptions(parse_instant(AS_OF)), time.perf_counter()
    settings = MetricsSettings(env="bench")
    session = build_session(settings.spark_master, shuffle_partitions=settings.spark_shuffle_partitions,
                            driver_memory=settings.spark_driver_memory)  # fmt: skip
    ready = time.perf_counter()
    outcome = compute_pass(session, lake_dir, specs, load_catalog(DEFAULT_CATALOG), options)
    finished = time.perf_counter()
    # The same pass again in the same session, as the scheduler's long-lived one runs its rounds.
    compute_pass(session, lake_dir, specs, load_catalog(DEFAULT_CATALOG), options)
    warm = time.perf_counter() - finished
    stats = read_stats(outcome.files, k, finished - ready)
    units = sum(sum(r.snapshots[-1].units.values()) for r in outcome.results.values() if r.snapshots)
    out.write_text(json.dumps({"startup_s": ready - started, "job_s": finished - ready, "warm_s": warm,
                               "rows_read": stats.rows_read, "files_read": stats.files_read,
                               "units": units}))  # fmt: skip
    session.stop()


def additive_metrics() -> tuple[str, ...]:
    """The catalog's metrics an incremental rerun can update (quantiles are not sums over units)."""
    return tuple(metric.name for metric in load_catalog(DEFAULT_CATALOG).metrics if metric.type != "quantile")


def publish_worker(lake_dir: Path, k: int, out: Path, results_dir: Path, states: tuple[Path | None, Path | None],
                   metrics: tuple[str, ...] | None) -> None:  # fmt: skip
    """Workload (b): `run_experiments` (publishing and the state commit included), then once
    more in the same session. Each of the two starts from its own state directory (None: no
    state), so the second redoes what the first did instead of finding nothing new."""
    specs = [ExperimentSpec(experiment_key(i), ("control", "treatment"), metrics) for i in range(k)]
    options, started = JobOptions(parse_instant(AS_OF)), time.perf_counter()
    settings = MetricsSettings(env="bench")
    session = build_session(settings.spark_master, shuffle_partitions=settings.spark_shuffle_partitions,
                            driver_memory=settings.spark_driver_memory)  # fmt: skip
    ready = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for name, state_dir in zip(("first", "again"), states, strict=True):
        begun = time.perf_counter()
        _, failures, stats = run_experiments(session, lake_dir, results_dir / name, specs,
                                             load_catalog(DEFAULT_CATALOG), options, state_dir)  # fmt: skip
        runs.append({"job_s": time.perf_counter() - begun, "failures": failures, **_run_facts(stats)})
    session.stop()
    out.write_text(json.dumps({"startup_s": ready - started, **runs[0], "warm_s": runs[1]["job_s"],
                               "warm": runs[1]}))  # fmt: skip


def _run_facts(stats: RunStats) -> dict[str, Any]:
    return {"mode": stats.mode, "incremental_experiments": stats.incremental_experiments,
            "full_reasons": stats.full_reasons, "files_read": stats.files_read,
            "rows_read": stats.rows_read}  # fmt: skip


def median_row(k: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One K's rounds -> the median of each time (the lake facts are the same in every round)."""
    times = {name: statistics.median(one[name] for one in rounds) for name in ("job_s", "warm_s", "startup_s")}
    return {"k": k, **rounds[0], **times, "rounds": rounds}


def measure(lake_dir: Path, k: int, work: Path) -> dict[str, Any]:
    out = work / f"k{k}.json"
    command = [sys.executable, "-m", "bench.metrics_scale", "--worker", str(k), "--lake", str(lake_dir),
               "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.DEVNULL)
    return dict(json.loads(out.read_text()))


def measure_published(lake_dir: Path, k: int, work: Path, name: str, states: tuple[Path | None, Path | None],
                      all_metrics: bool) -> dict[str, Any]:  # fmt: skip
    """One `publish_worker` run; its documents land under work/results/<name>/{first,again}."""
    out, results = work / f"{name}.json", work / "results" / name
    command = [sys.executable, "-m", "bench.metrics_scale", "--worker", str(k), "--lake", str(lake_dir),
               "--out", str(out), "--publish", str(results)]  # fmt: skip
    command += [] if all_metrics else ["--metrics", ",".join(additive_metrics())]
    command += [arg for flag, state in zip(("--state", "--state-again"), states, strict=True) if state is not None
                for arg in (flag, str(state))]  # fmt: skip
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.DEVNULL)
    return {**json.loads(out.read_text()), "results": str(results)}


def published_documents(results_dir: Path) -> dict[str, Any]:
    """Each experiment's latest.json, bar `computed_at` (the one field two runs never share)."""
    documents = {}
    for path in sorted(results_dir.glob("*/latest.json")):
        document = json.loads(path.read_text())
        document.pop("computed_at", None)
        documents[path.parent.name] = document
    return documents


def differences(ours: Any, theirs: Any, where: str = "") -> list[str]:
    """The JSON paths at which two documents differ (a missing key counts as a difference)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for key in sorted(ours.keys() | theirs.keys(), key=str):
            found += differences(ours.get(key, "<missing>"), theirs.get(key, "<missing>"), f"{where}.{key}")
        return found
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        found = []
        for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
            found += differences(mine, other, f"{where}[{index}]")
        return found
    return [] if ours == theirs else [f"{where or '.'}: {json.dumps(ours)[:80]} != {json.dumps(theirs)[:80]}"]


def rerun_workload(lake_dir: Path, events: int, k: int, work: Path, all_metrics: bool) -> dict[str, Any]:
    """Workload (b): a full run that keeps state, +1% events, the incremental rerun from that
    state, a from-scratch run over the final lake, and whether the rerun's documents equal it."""
    states = work / "states"
    before = measure_published(lake_dir, k, work, "before", (states / "first", states / "again"), all_metrics)
    added = add_one_percent(lake_dir, events)
    # The second rerun in the session starts from the same kept state as the first.
    shutil.copytree(states / "first", states / "rerun-again")
    after = measure_published(lake_dir, k, work, "rerun", (states / "first", states / "rerun-again"), all_metrics)
    scratch = measure_published(lake_dir, k, work, "scratch", (None, None), all_metrics)
    expected = published_documents(Path(scratch["results"]) / "first")
    if len(expected) < k:  # nothing to compare is no evidence of equality
        expected[f"<{k - len(expected)} documents the run from scratch did not publish>"] = None
    found = {
        name: differences(published_documents(Path(after["results"]) / name), expected) for name in ("first", "again")
    }
    return {
        "k": k,
        "added": added,
        "before": before,
        "after": after,
        "scratch": scratch,
        "differences": found,
        "metrics": len(load_catalog(DEFAULT_CATALOG).metrics) if all_metrics else len(additive_metrics()),
    }


def report(events: int, shape: dict[str, int], rows: list[dict[str, Any]], rerun: dict[str, Any] | None,
           loads: tuple[float, float]) -> str:  # fmt: skip
    base, warm_base = rows[0]["job_s"], rows[0]["warm_s"]
    rounds = len(rows[0]["rounds"])
    lines = [
        "## Metrics job at platform scale", "",
        "Reproduce with `.venv/bin/python -m bench.metrics_scale --events N --ks 1,8,32` (prints this section).",
        "",
        f"- {os.cpu_count()} logical cores; Spark `local[*]`, the shipped settings; "
        f"1-minute load average at start / end: {loads[0]:.2f} / {loads[1]:.2f}",
        f"- measured: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
        f"{events:,} events over {shape['units']:,} units ({shape['event_rows']:,} event rows with duplicates), "
        f"{shape['exposure_rows']:,} exposure rows for {max(r['k'] for r in rows)} experiments over the same "
        f"population (each exposes ~60% of the units); all {len(load_catalog(DEFAULT_CATALOG).metrics)} catalog "
        "metrics for every experiment. One pass "
        "computes the K experiments; job time excludes the JVM start-up. *First*: the first pass of a fresh "
        "process (JIT warm-up included); *again*: the same pass once more in the same session, as the "
        "scheduler's long-lived session runs every round after its first. "
        f"{rounds} round(s), each a fresh process per K (the Ks in turn, round after round); the table gives "
        "each K's median, and the range of its first passes.", "",
        "| K experiments | first (s) | first, range (s) | × K=1 | again (s) | × K=1 | start-up (s) | lake files read "
        "| lake rows read | analysed units |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for row in rows:
        firsts = [one["job_s"] for one in row["rounds"]]
        lines.append(f"| {row['k']} | {row['job_s']:.1f} | {min(firsts):.1f}–{max(firsts):.1f} "
                     f"| {row['job_s'] / base:.2f} | {row['warm_s']:.1f} "
                     f"| {row['warm_s'] / warm_base:.2f} | {row['startup_s']:.1f} "
                     f"| {row['files_read']:,} | {row['rows_read']:,} | {row['units']:,} |")  # fmt: skip
    if rerun is not None:
        lines += ["", *rerun_report(rerun)]
    return "\n".join(lines)


def rerun_report(rerun: dict[str, Any]) -> list[str]:
    """Workload (b) in words: the incremental rerun's time against the full run before it and
    a from-scratch run after it, how it ran, and whether its documents equal the latter's."""
    before, after, scratch, found = rerun["before"], rerun["after"], rerun["scratch"], rerun["differences"]
    identical = not any(found.values())
    lines = [
        f"Rerun after +1% events ({rerun['added']:,} rows, a tenth late for frozen days), K = {rerun['k']}, "
        "each a `run_experiments` with publishing and the state commit timed in; as-of is the same fixed "
        f"instant for every run, so the timeline does not move; {rerun['metrics']} metrics per experiment "
        "(without `--rerun-all-metrics`, the catalog's additive ones: a quantile metric sends an experiment to a "
        "full recompute). The run before the +1% keeps its state; the "
        "rerun starts from it (*again*: the same rerun once more in the session, from a copy of the same "
        "state); *from scratch*: a full run with no state over the same final lake.", "",
        "| run | mode | incremental experiments | first (s) | again (s) | lake files read | lake rows read |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for name, row in (("full, before the +1%", before), ("rerun from kept state", after), ("from scratch", scratch)):
        modes = dict.fromkeys((row["mode"], row["warm"]["mode"]))  # "full / incremental" when they differ
        lines.append(f"| {name} | {' / '.join(modes)} | {row['incremental_experiments']} | {row['job_s']:.1f} "
                     f"| {row['warm_s']:.1f} | {row['files_read']:,} | {row['rows_read']:,} |")  # fmt: skip
    lines += ["", f"The rerun took {after['job_s'] / before['job_s']:.0%} of the full run before it "
              f"and {after['job_s'] / scratch['job_s']:.0%} of the run from scratch (again: "
              f"{after['warm_s'] / before['warm_s']:.0%} and {after['warm_s'] / scratch['warm_s']:.0%})."]  # fmt: skip
    reasons = {**after["full_reasons"], **after["warm"]["full_reasons"]}
    if reasons:
        lines += ["", "Recomputed in full in the rerun: "
                  + "; ".join(f"{key}: {reason}" for key, reason in sorted(reasons.items())) + "."]  # fmt: skip
    lines += ["", f"identical results: {'yes' if identical else 'NO'} (the rerun's published documents against "
              "the run from scratch's, as JSON, bar `computed_at`)"]  # fmt: skip
    for name, paths in found.items():
        if paths:
            lines.append(f"- {name} rerun differs at {len(paths)} paths: " + "; ".join(paths[:20]))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the lake")
    parser.add_argument("--ks", default="1,8,32", help="experiments per run, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per K in workload (a)")
    parser.add_argument("--no-rerun", action="store_true", help="skip workload (b)")
    parser.add_argument("--rerun-all-metrics", action="store_true",
                        help="workload (b) with every catalog metric (a quantile one makes reruns full)")  # fmt: skip
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--publish", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--state-again", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--metrics", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker and args.publish:
        metrics = tuple(args.metrics.split(",")) if args.metrics else None
        publish_worker(args.lake, args.worker, args.out, args.publish, (args.state, args.state_again), metrics)
        return
    if args.worker:
        run_worker(args.lake, args.worker, args.out)
        return
    ks, start_load = [int(k) for k in args.ks.split(",")], os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="assay-bench-scale-") as work:
        lake_dir = Path(work) / "lake"
        shape = synthetic_lake(lake_dir, args.events, max(ks))
        measured: dict[int, list[dict[str, Any]]] = {k: [] for k in ks}
        for _ in range(args.rounds):
            for k in ks:
                measured[k].append(measure(lake_dir, k, Path(work)))
                print(f"K={k}: {measured[k][-1]['job_s']:.1f}s", file=sys.stderr, flush=True)
        rows = [median_row(k, found) for k, found in measured.items()]
        rerun = None
        if not args.no_rerun:
            rerun = rerun_workload(lake_dir, args.events, max(ks), Path(work), args.rerun_all_metrics)
            print(f"rerun: {rerun['after']['mode']}, {rerun['after']['job_s']:.1f}s", file=sys.stderr, flush=True)
    print(report(args.events, shape, rows, rerun, (start_load, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
