"""Read the metrics job's results documents (files under ASSAY_DATA_DIR/results/).

The job publishes `<experiment>/latest.json` atomically (temp file + rename), so a reader
sees either the previous or the next complete document, never half of one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from assay.models import EXPERIMENT_KEY_PATTERN


class ResultsStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def latest(self, experiment: str) -> dict[str, Any] | None:
        if re.fullmatch(EXPERIMENT_KEY_PATTERN, experiment) is None:
            return None  # never build a path from an unchecked key
        path = self.root / experiment / "latest.json"
        try:
            document = json.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        return document if isinstance(document, dict) else None

    def experiments(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/latest.json"))
