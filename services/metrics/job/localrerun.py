"""A small rerun on the driver: the additive rerun (`rerun._additive`) without Spark jobs
over the lake or the state.

When a quick rerun's new rows are few, what `_additive` does with Spark frames costs mostly
Spark's own overhead: jobs planned, compiled and scheduled, Python workers started, the kept
per-unit rows and exposures scanned to pick the touched units'. Here one narrow Spark query
(no exchange) reads the new relevant event rows with their id hashes and values (Spark's own
expressions, so Spark's digits), and everything else runs in this process: the rows
de-duplicated as `transforms.distinct_events` does (`_distinct`), the kept hashes and the
touched units' kept rows read with pyarrow, their segments taken from those rows
(`unitmath.kept_inputs`: no exposure changed since the kept run), `unitmath.rerun_rows`
called directly on them, and the next per-unit state written with pyarrow.

It takes only what it can do exactly and entirely; anything else returns None before a
byte is written, and the caller goes the Spark way, which handles every case:
- more new relevant event rows than `JobOptions.driver_rerun_events`;
- any new exposure (the caller checks: the kept exposure summaries must stand);
- a new event whose copies disagree, whose id hash repeats among the new rows, or that the
  kept run counted (the units `rerun._split` calls suspected);
- a unit with a row entering before its experiment's horizon (`rerun_rows`' HARD rows), or
  sums that could leave 64 bits.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from services.metrics.job import state as st
from services.metrics.job import transforms as tf
from services.metrics.job import unitmath as um
from services.metrics.job import unitstate as us
from services.metrics.job.aggregate import DELTA_COLUMNS, array_deltas, array_event_counts, by_experiment
from services.metrics.job.document import LatestRows
from services.metrics.job.incremental import KeptExperiment, Totals
from services.metrics.job.plan import ExperimentPlan
from services.metrics.job.run import JobOptions

log = logging.getLogger("services.metrics.job")

_EVENT_COLUMNS = ("unit_id", "id_hash", "name", "ts_us", "received_us", "copies", "last_received_us", "consistent")


def statistics(
    new_events: DataFrame, plans: Mapping[str, ExperimentPlan], kept: Mapping[str, KeptExperiment],
    state: st.LoadedState, options: JobOptions, tables: us.UnitTables,
) -> dict[str, tuple[Totals, LatestRows]] | None:  # fmt: skip
    """The incremental experiments' totals from the new events and the kept state, computed
    here, with the next per-unit state written to `tables`; None (nothing written) when this
    rerun is not one this way can do (see the module)."""
    started = time.perf_counter()
    events = _new_events(new_events, plans, options)
    if events is None:
        _declined(f"more than {options.driver_rerun_events} new event rows")
        return None
    why = _suspect(events, state)
    if why is not None:
        _declined(why)
        return None
    touched = pc.unique(pc.drop_null(events["unit_id"]))
    keys = sorted(plans)
    kept_rows = us.units_table(state.directory, keys, touched)
    rows = pa.concat_tables([um.event_inputs(events), um.kept_inputs(kept_rows)])
    plan = um.UnitPlan.build(plans, options.late_threshold_us, keep_units=True)
    output = pa.Table.from_batches(list(um.rerun_rows(plan, iter(rows.to_batches()))), um.OUTPUT_SCHEMA)
    parts = _parts(output)
    if parts[um.HARD]:
        _declined("a new event enters before its experiment's horizon")
        return None
    if parts[um.OVERFLOW]:
        _declined("64-bit sums would overflow")
        return None
    net, counts = by_experiment(array_deltas(parts)), array_event_counts(parts)
    units = output.filter(pc.equal(output["part"], um.UNITS))
    _write(tables, state, keys, touched, units, events)
    log.info("incremental units", extra={"updated": len(touched), "recomputed": 0})
    log.info("rerun computed on the driver", extra={"events": events.num_rows, "units": len(touched),
                                                   "kept_rows": kept_rows.num_rows,
                                                   "seconds": round(time.perf_counter() - started, 3)})  # fmt: skip
    return {
        key: (kept[key].totals.updated(Totals.collected(net.get(key, []), [], counts.get(key)), Totals()),
              LatestRows())
        for key in plans
    }  # fmt: skip


def _declined(why: str) -> None:
    log.info("rerun not on the driver", extra={"reason": why})


def _new_events(new_events: DataFrame, plans: Mapping[str, ExperimentPlan], options: JobOptions) -> pa.Table | None:
    """The new relevant events de-duplicated as `rerun._split` does (`tf.distinct_events`),
    with their INPUT values; None when there are more than the limit's rows.

    One narrow Spark query (no exchange) gives each row with its id hash and values, so those
    are Spark's own; the rows are de-duplicated here (`_distinct`), or, should two copies of
    an event tie on their receipt, by `tf.distinct_events` itself."""
    names: set[str] = set().union(*(plan.event_names for plan in plans.values()))
    since_us = min(plan.since_us for plan in plans.values())
    relevant = tf.relevant_events(new_events, names, since_us, options.as_of_us)
    values = [column.alias(name) for name, column in um.event_values().items()]
    limit = options.driver_rerun_events
    rows = relevant.select(*_ROW_COLUMNS, tf.id_hash().alias("id_hash"), *values).limit(limit + 1).toArrow()
    if rows.num_rows > limit:
        return None
    distinct = _distinct(rows)
    if distinct is None:
        distinct = tf.distinct_events(relevant, 1).select(*_EVENT_COLUMNS, *values).toArrow()
    return distinct


_ROW_COLUMNS = ("unit_id", "event_id", "name", "ts_us", "received_us", "kafka_partition", "kafka_offset")


def _distinct(rows: pa.Table) -> pa.Table | None:
    """Relevant event rows (with `id_hash` and the INPUT values) -> `tf.distinct_events`' rows
    (`_EVENT_COLUMNS`) with those values: per (unit_id, event_id) the copy received first
    (then by Kafka partition and offset) with `copies`, `last_received_us` and `consistent`
    (every copy has the same name and time). None when that order cannot pick the copy
    Spark's would without comparing the rest of the row: a null event id, partition or
    offset, or two copies of an event with the same receipt, partition and offset."""
    if any(rows[name].null_count for name in ("event_id", "kafka_partition", "kafka_offset")):
        return None
    unit, event, name = (_codes(rows[column]) for column in ("unit_id", "event_id", "name"))
    numbers = ("received_us", "ts_us", "kafka_partition", "kafka_offset")
    received, ts, partition, offset = (np.asarray(rows[column].to_numpy(), np.int64) for column in numbers)
    order = np.lexsort((offset, partition, received, event, unit))
    unit, event, name, received, ts, partition, offset = (
        column[order] for column in (unit, event, name, received, ts, partition, offset)
    )
    firsts = np.ones(order.size, bool)
    firsts[1:] = (unit[1:] != unit[:-1]) | (event[1:] != event[:-1])
    tied = (received[1:] == received[:-1]) & (partition[1:] == partition[:-1]) & (offset[1:] == offset[:-1])
    if (tied & ~firsts[1:]).any():
        return None
    starts = np.flatnonzero(firsts)
    if not starts.size:
        return _shaped(rows.slice(0, 0), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))
    consistent = (np.minimum.reduceat(name, starts) == np.maximum.reduceat(name, starts)) & (
        np.minimum.reduceat(ts, starts) == np.maximum.reduceat(ts, starts)
    )
    copies = np.diff(np.append(starts, order.size))
    return _shaped(rows.take(pa.array(order[starts])), copies, np.maximum.reduceat(received, starts), consistent)


def _shaped(winners: pa.Table, copies: np.ndarray, last_received: np.ndarray, consistent: np.ndarray) -> pa.Table:
    found = {"copies": pa.array(copies, pa.int64()), "last_received_us": pa.array(last_received, pa.int64()),
             "consistent": pa.array(consistent, pa.bool_())}  # fmt: skip
    names = [*_EVENT_COLUMNS, "amount", "valued"]  # with `unitmath.event_values`
    return pa.table([found[name] if name in found else winners[name] for name in names], names=names)


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """A string column's values as integer codes, equal where the values are (null: -1)."""
    codes = pc.dictionary_encode(column.combine_chunks()).indices
    return np.asarray(pc.fill_null(codes, -1).to_numpy(zero_copy_only=False), np.int64)


def _suspect(events: pa.Table, state: st.LoadedState) -> str | None:
    """Why some new event's unit cannot be updated from its kept rows alone (None: none)."""
    if not pc.all(events["consistent"]).as_py() and events.num_rows:
        return "copies of a new event disagree"
    hashes = events["id_hash"].combine_chunks()
    if len(pc.unique(hashes)) != len(hashes):
        return "a new event id repeats under two units, or two ids' hashes collide"
    if len(hashes) and pc.any(pc.is_in(us.hashes_array(state.directory), value_set=hashes)).as_py():
        return "a new event's id was counted by the kept run"
    return None


def _parts(output: pa.Table) -> dict[int, list[dict[str, Any]]]:
    """`rerun_rows`' rows by part, as `aggregate.array_parts` gives them (one call's rows are
    already one per key)."""
    parts: dict[int, list[dict[str, Any]]] = defaultdict(list)
    wanted = {um.DELTAS: DELTA_COLUMNS, um.QUALITY: ("experiment", *um.QUALITY_COUNTS),
              um.SCOPED: ("experiment", "scoped", "in_experiment", "watermark_us"), um.HARD: ("unit_id",),
              um.OVERFLOW: ("part",)}  # fmt: skip
    for part, columns in wanted.items():
        parts[part] = output.filter(pc.equal(output["part"], part)).select(list(columns)).to_pylist()
    return parts


def _write(tables: us.UnitTables, state: st.LoadedState, keys: list[str], touched: pa.Array, units: pa.Table,
           events: pa.Table) -> None:  # fmt: skip
    """The next per-unit state: a layer with the touched units' rows now over the kept ones,
    or (past `unitstate.MAX_LAYERS`) every unit's rows in one new layer; the kept hashes and
    the new events'."""
    if not tables.carry(state.directory, touched):
        others = us.units_table(state.directory, keys)
        others = others.filter(pc.invert(pc.is_in(others["unit_id"], value_set=touched)))
        tables.add_units(others)
        tables.link(state.directory, us.HASHES_DIR)
    tables.add_units(units)
    tables.add_hashes(events.select(["id_hash"]).cast(pa.schema([("id_hash", pa.int64())])))
