"""Per-unit state of the metrics job: what lets a rerun add new events to the kept totals
without reading the lake's old events again.

A state directory may hold, besides the totals (`incremental`), two Parquet tables:

- `units/`: per experiment, each unit's merged increments (`transforms.merged_increments`:
  per metric, segment and entry `c`, the `num`, `den`, `pre` sums in millionths) from its
  experiment's *horizon* h on, with everything before h collapsed into one row at h - 1 per
  segment. The values a unit has at every snapshot from h - 1 on follow from these rows
  exactly as from all of its rows. One Parquet row per (experiment, unit, segment) holds
  them packed (`rows`, records of ROW in (metric, c) order; `metric` is the rank of the
  metric's name among the experiment's, see `unitmath`), so Spark reads and moves one row
  where there are about as many as metrics x snapshots. Each row also holds its segment
  (`seg_end`, `first_segment`, `first_us`, `variant`, `included`), and every segment of an
  exposed unit has one, rows or not: a unit whose exposures did not change has the same
  segments, so a rerun takes them from here (`unitmath.kept_inputs`).
- `hashes/`: the `id_hash` of every de-duplicated relevant event the kept run counted.

A new event whose id the kept run never saw, of a unit whose exposures did not change, only
adds to its unit's sums at its entry c. When c >= h, the unit's contribution changes only
from h - 1 on, so the same arithmetic over the unit's kept rows, without and with the new
events' increments, gives exactly what the totals must lose and gain (the contributions
before h - 1 are the same in both and cancel). That is the *additive* rerun
(`rerun._additive`); any other unit (a new exposure, an id the kept run saw or whose hash
repeats, copies that disagree, a row entering before h) goes the way that recomputes it from
the lake.

The horizon is one day before the first snapshot that is not frozen: a row received after the
kept run's as-of enters no earlier than that snapshot (its receipt index is at least the frozen
days), and one day of margin keeps rows received shortly before it, that reached the lake after
the kept run read it, additive too.

Only the per-unit arrays (`unitmath`) write and read these rows: a pass that sums in Spark
frames (no ANSI mode, or sums past 64 bits) keeps no per-unit state, and the rerun after it
recomputes its changed units from the lake.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from services.metrics.job import transforms as tf
from services.metrics.job.timeline import Timeline

log = logging.getLogger("services.metrics.job")

UNITS_DIR = "units"
HASHES_DIR = "hashes"
UNIT_DDL = (
    "experiment string, unit_id string, seg_start int, seg_end int, first_segment boolean, first_us long, "
    "variant string, included boolean, rows binary"
)
UNIT_COLUMNS = tuple(field.strip().split(" ")[0] for field in UNIT_DDL.split(","))
_UNIT_SCHEMA = pa.schema([(name, tf.ARROW_TYPES[kind]) for name, kind in (field.strip().split(" ") for field in
                                                                          UNIT_DDL.split(","))])  # fmt: skip
# One kept row in `rows`: little-endian, 32 bytes.
ROW = np.dtype([("metric", "<i4"), ("c", "<i4"), ("num", "<i8"), ("den", "<i8"), ("pre", "<i8")])


def horizon(timeline: Timeline) -> int:
    """The first snapshot whose per-unit values the state keeps apart (see the module)."""
    return max(timeline.frozen_days - 1, 0)


MAX_LAYERS = 8  # a rerun adds a layer of changed units' rows; past this many it rewrites them all


@dataclass
class UnitTables:
    """Where a pass writes its per-unit tables (a staging directory) and whether they are whole:
    a part that could not be written (the decimal path, an overflow) leaves the state without
    them, and the next rerun recomputes its units from the lake.

    `units/` is a stack of layers `units/<n>/rows` (n = 0, 1, ...): layer 0 holds every unit's
    rows, and each later one, written by a rerun, the rows of the units listed in its
    `units/<n>/replaced`, which replace theirs in every earlier layer (`read_units`). A rerun
    that changes a fifth of the units therefore writes a fifth of the rows; the earlier
    layers, like the kept hashes, are hard links to the previous version's files."""

    staging: Path
    complete: bool = True
    written: set[str] = field(default_factory=set)
    layer: int = 0

    def add_units(self, frame: DataFrame | pa.Table) -> None:
        target = self.staging / UNITS_DIR / f"{self.layer:04d}" / "rows"
        self._append(frame.select(list(UNIT_COLUMNS)), target)
        self.written.add(UNITS_DIR)

    def add_hashes(self, frame: DataFrame | pa.Table) -> None:
        self._append(frame.select(["id_hash"]), self.staging / HASHES_DIR)
        self.written.add(HASHES_DIR)

    def carry(self, previous: Path, replaced: DataFrame | pa.Array) -> bool:
        """Link the previous version's layers and hashes here and open a new layer replacing
        the `replaced` units (a frame of `unit_id`, or the ids), False (nothing done) when the
        previous version already has MAX_LAYERS layers: then the caller rewrites the rows."""
        layers = _layers(previous)
        if len(layers) >= MAX_LAYERS:
            return False
        self.link(previous, UNITS_DIR)
        self.link(previous, HASHES_DIR)
        self.layer = len(layers)
        target = self.staging / UNITS_DIR / f"{self.layer:04d}" / "replaced"
        if isinstance(replaced, DataFrame):
            replaced.select("unit_id").distinct().write.parquet(str(target))
        else:
            self._append(pa.table({"unit_id": pc.unique(replaced.cast(pa.string()))}), target)
        return True

    def link(self, previous: Path, name: str) -> None:
        """Hard links here to the previous version's `name` table (UNITS_DIR or HASHES_DIR)."""
        for path in (previous / name).rglob("*.parquet"):
            target = self.staging / path.relative_to(previous)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
        self.written.add(name)

    def _append(self, rows: DataFrame | pa.Table, target: Path) -> None:
        """Rows into a Parquet directory: a Spark frame by Spark, an Arrow table as one file."""
        if isinstance(rows, DataFrame):
            rows.write.mode("append").parquet(str(target))
            return
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows, target / f"part-{uuid.uuid4().hex}-driver.parquet")

    def incomplete(self, why: str) -> None:
        if self.complete:
            log.info("the per-unit state is not kept; the next rerun recomputes changed units from the lake",
                     extra={"reason": why})  # fmt: skip
        self.complete = False

    def seal(self) -> None:
        """Before the commit: drop the tables unless both are whole."""
        if not self.complete or self.written != {UNITS_DIR, HASHES_DIR}:
            for name in (UNITS_DIR, HASHES_DIR):
                shutil.rmtree(self.staging / name, ignore_errors=True)


def _layers(directory: Path) -> list[Path]:
    units = directory / UNITS_DIR
    return sorted(path for path in units.iterdir() if path.is_dir()) if units.is_dir() else []


def usable(directory: Path) -> str | None:
    """Why the kept per-unit tables cannot be read (None: they can): both present, layers
    numbered from 0 without a gap, and every Parquet footer readable."""
    layers = _layers(directory)
    if not layers or not (directory / HASHES_DIR).is_dir():
        return "no per-unit state"
    if [path.name for path in layers] != [f"{n:04d}" for n in range(len(layers))]:
        return "per-unit state unreadable: its layers are not numbered 0, 1, ..."
    try:
        for name in (UNITS_DIR, HASHES_DIR):
            for path in (directory / name).rglob("*.parquet"):
                pq.read_metadata(path)
    except (OSError, ValueError) as exc:
        return f"per-unit state unreadable: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def read_units(spark: SparkSession, directory: Path, keys: list[str]) -> DataFrame:
    """The kept rows of these experiments: each unit's from the last layer that has it."""
    layers = _layers(directory)
    rows = spark.read.schema(UNIT_DDL).parquet(str(layers[0] / "rows"))
    if len(layers) > 1:
        tagged = rows.withColumn("layer", F.lit(0))
        replaced = None
        for index, layer in enumerate(layers[1:], start=1):
            found = spark.read.schema(UNIT_DDL).parquet(str(layer / "rows")).withColumn("layer", F.lit(index))
            tagged = tagged.unionByName(found)
            units = spark.read.schema("unit_id string").parquet(str(layer / "replaced"))
            units = units.withColumn("last", F.lit(index))
            replaced = units if replaced is None else replaced.unionByName(units)
        assert replaced is not None
        last = replaced.groupBy("unit_id").agg(F.max("last").alias("last"))
        rows = (
            tagged.join(F.broadcast(last), "unit_id", "left")
            .where(F.col("layer") == F.coalesce(F.col("last"), F.lit(0)))
            .select(*UNIT_COLUMNS)
        )
    return rows.where(F.col("experiment").isin(keys))


def read_hashes(spark: SparkSession, directory: Path) -> DataFrame:
    return spark.read.schema("id_hash long").parquet(str(directory / HASHES_DIR))


def units_table(directory: Path, keys: list[str], units: pa.Array | None = None) -> pa.Table:
    """`read_units` on the driver, as one Arrow table: the kept rows of these experiments,
    each unit's from the last layer that has it; with `units`, only theirs."""
    layers = _layers(directory)
    wanted = ds.field("experiment").isin(keys)
    if units is not None:
        wanted &= ds.field("unit_id").isin(units)
    replaced = [pa.array([], pa.string())] + [
        _dataset(layer / "replaced", _REPLACED_SCHEMA).to_table(
            filter=None if units is None else ds.field("unit_id").isin(units))["unit_id"].combine_chunks()
        for layer in layers[1:]
    ]  # fmt: skip
    found = []
    for index, layer in enumerate(layers):
        rows = _dataset(layer / "rows", _UNIT_SCHEMA).to_table(filter=wanted)
        later = pa.chunked_array(replaced[index + 1 :] or [pa.array([], pa.string())], pa.string())
        keep = pc.invert(pc.is_in(rows["unit_id"], value_set=later.combine_chunks()))
        if index:  # a later layer holds the rows of the units it replaced
            keep = pc.and_(keep, pc.is_in(rows["unit_id"], value_set=replaced[index]))
        found.append(rows.filter(keep))
    return pa.concat_tables(found) if found else _UNIT_SCHEMA.empty_table()


def hashes_array(directory: Path) -> pa.Array:
    """`read_hashes` on the driver."""
    return _dataset(directory / HASHES_DIR, _HASH_SCHEMA).to_table()["id_hash"].combine_chunks()


_REPLACED_SCHEMA = pa.schema([("unit_id", pa.string())])
_HASH_SCHEMA = pa.schema([("id_hash", pa.int64())])


def _dataset(directory: Path, schema: pa.Schema) -> ds.Dataset:
    """A Parquet directory as Spark writes it (files named `_...` or `.` are not data; one
    with no data file at all is an empty table of `schema`)."""
    return ds.dataset(str(directory), format="parquet", schema=schema)
