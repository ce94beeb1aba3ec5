"""Run inside a stack container: `python -m deploy.compose_test.lake_count PREFIX`.

Prints JSON {topic: [rows, distinct event ids]} over the lake's rows whose unit id starts
with PREFIX, so the test can tell "landed" from "landed exactly once".
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TOPICS = ("assay.exposures", "assay.events")


def count(lake: Path, topic: str, prefix: str) -> list[int]:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    root = lake / topic
    if not root.exists():
        return [0, 0]
    table = ds.dataset(root, format="parquet", partitioning="hive").to_table(
        columns=["event_id"], filter=pc.starts_with(ds.field("unit_id"), prefix)
    )
    ids = table.column("event_id").to_pylist()
    return [len(ids), len(set(ids))]


def main(argv: list[str]) -> int:
    lake = Path(os.environ.get("ASSAY_DATA_DIR", "/data")) / "lake"
    print(json.dumps({topic: count(lake, topic, argv[0]) for topic in TOPICS}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
