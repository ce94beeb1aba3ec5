"""What the local stack is (`make up`): where it keeps its state and which services it runs on
which default ports. Both the runner (`deploy.local`) and the demo (`deploy.demo`) need this,
so it lives apart from both and neither has to import the other to learn it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (pid-file name, module, port variable, default port), started in this order.
SERVICES = (
    ("assignment", "services.assignment", "ASSAY_ASSIGNMENT_PORT", 8001),
    ("exposure", "services.exposure", "ASSAY_EXPOSURE_PORT", 8002),
    ("scorecard", "services.scorecard", "ASSAY_SCORECARD_PORT", 8003),
    # Kafka -> Parquet lake; `python -m services.metrics` defaults to `ingest` and answers /healthz.
    ("metrics-ingest", "services.metrics", "ASSAY_METRICS_PORT", 8004),
)
METRICS_JOB = "metrics-job"


@dataclass(frozen=True)
class Layout:
    data_dir: Path

    @property
    def pids(self) -> Path:
        return self.data_dir / "pids"

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    def pid_file(self, name: str) -> Path:
        return self.pids / f"{name}.json"


def layout_from_env() -> Layout:
    """State under `.assay/` in the repository unless `ASSAY_DATA_DIR` moves it."""
    data_dir = Path(os.environ.get("ASSAY_DATA_DIR", REPO / ".assay")).resolve()
    return Layout(data_dir)
