"""`python -m deploy.results_schema`: writes docs/results.schema.json from the results-document
models (services/common/results.py) that the metrics job writes and the scorecard reads.

`tests/unit/deploy/test_results_schema.py` fails when the file is stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from deploy.generated import write_or_check
from services.common.results import json_schema

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "results.schema.json"
COMMAND = "python -m deploy.results_schema"


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


def main(argv: Iterable[str] | None = None) -> int:
    return write_or_check(argv, description=__doc__, output=OUTPUT, repo=REPO, command=COMMAND, render=render)


if __name__ == "__main__":
    sys.exit(main())
