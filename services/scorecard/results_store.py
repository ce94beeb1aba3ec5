"""Read the metrics job's results documents (files under ASSAY_DATA_DIR/results/).

The job publishes `<experiment>/latest.json` atomically (temp file + rename), so a reader
sees either the previous or the next complete document, never half of one. Documents are
read through the shared model (services/common/results.py). A file that is not a results
document (not JSON, not an object, a field missing or of the wrong type) counts as no results,
with an error in the log naming the file: one damaged file must not turn every page that lists
experiments into a 500, and the job's next run replaces it.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from assay.models import EXPERIMENT_KEY_PATTERN
from pydantic import ValidationError

from services.common.results import ResultsDocument

log = logging.getLogger("services.scorecard.results")
MAX_LOGGED_ERRORS = 5


class ResultsStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def latest(self, experiment: str) -> ResultsDocument | None:
        if re.fullmatch(EXPERIMENT_KEY_PATTERN, experiment) is None:
            return None  # never build a path from an unchecked key
        path = self.root / experiment / "latest.json"
        try:
            text = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            document = json.loads(text)
        except ValueError:
            log.error("results document ignored: not JSON", extra={"experiment": experiment, "path": str(path)})
            return None
        if not isinstance(document, dict):
            log.error("results document ignored: not a JSON object", extra={"experiment": experiment,
                                                                            "path": str(path)})  # fmt: skip
            return None
        try:
            return ResultsDocument.model_validate(document, extra="ignore")
        except ValidationError as exc:
            errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:MAX_LOGGED_ERRORS]]
            log.error("results document ignored: it does not match the results model", extra={
                "experiment": experiment, "path": str(path), "error_count": exc.error_count(), "errors": errors,
            })  # fmt: skip
            return None

    def experiments(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/latest.json"))
