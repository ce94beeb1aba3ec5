"""Publishing results: a writer killed at any moment never leaves a partial latest.json."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.common.results import DataQuality, ResultsDocument
from services.metrics.job.io import publish

REPO = Path(__file__).resolve().parents[3]
WRITER = """
import itertools, sys
from pathlib import Path
from services.metrics.job.io import publish
from tests.unit.metrics.test_publish import empty_document
for i in itertools.count():
    publish(Path(sys.argv[1]), empty_document(f"2026-11-22T00:00:00.{i:06d}Z", padding=5000))
    if i == 0:
        print("ready", flush=True)
"""


def empty_document(computed_at: str, padding: int = 0) -> ResultsDocument:
    """A document of experiment `exp` with no exposures; `padding` long names make it big."""
    quality = dict.fromkeys(DataQuality.model_fields, 0) | {"watermark": None}
    return ResultsDocument(
        experiment="exp", computed_at=computed_at, as_of="2026-11-22T00:00:00.000000Z", catalog_version="c",
        first_exposure_date=None, allowed_lateness_hours=72.0, late_threshold_hours=1.0,
        missing_metrics=("x" * 200,) * padding, data_quality=DataQuality.model_validate(quality),
        variants={}, metrics=(), daily=(),
    )  # fmt: skip


def test_publish_writes_history_and_latest(tmp_path: Path) -> None:
    document = empty_document("2026-11-22T01:02:03.000000Z")
    latest = publish(tmp_path, document)
    assert latest == tmp_path / "exp" / "latest.json"
    assert latest.read_bytes() == document.to_json()
    assert json.loads(latest.read_text())["first_exposure_date"] is None
    assert ResultsDocument.model_validate_json(latest.read_bytes()) == document
    history = tmp_path / "exp" / "history" / "2026-11-22T01:02:03.000000Z.json"
    assert history.read_bytes() == document.to_json()


def test_killed_writer_never_leaves_a_partial_latest(tmp_path: Path) -> None:
    rng = random.Random(5)
    for _ in range(4):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE)
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.01, 0.3))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)
        document = ResultsDocument.model_validate_json((tmp_path / "exp" / "latest.json").read_bytes())
        assert len(document.missing_metrics) == 5000
        visible = [p.name for p in (tmp_path / "exp").iterdir() if not p.name.startswith(".")]
        assert sorted(visible) == ["history", "latest.json"]  # only dot-files may be left over


def test_publish_removes_temporaries_a_killed_run_left_behind(tmp_path: Path) -> None:
    base = tmp_path / "exp"
    (base / "history").mkdir(parents=True)
    old = [base / ".latest.json.dead0001.tmp", base / "history" / ".2026-11-21.json.dead0002.tmp"]
    young = base / ".latest.json.busy0003.tmp"  # a writer may still be at work on it
    for path in [*old, young]:
        path.write_bytes(b"{partial")
    hours_ago = time.time() - 2 * 3600
    for path in old:
        os.utime(path, (hours_ago, hours_ago))
    publish(tmp_path, empty_document("2026-11-22T01:02:03.000000Z"))
    assert not any(path.exists() for path in old)
    assert young.exists()
