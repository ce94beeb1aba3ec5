"""`python -m deploy.results_schema`: writes docs/results.schema.json from the results-document
models (services/common/results.py) that the metrics job writes and the scorecard reads.

`tests/unit/deploy/test_results_schema.py` fails when the file is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from services.common.results import json_schema

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "results.schema.json"
COMMAND = "python -m deploy.results_schema"


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the schema file is stale; write nothing")
    args = parser.parse_args(list(argv) if argv is not None else None)
    text = render()
    if args.check:
        stale = not OUTPUT.exists() or OUTPUT.read_text() != text
        print(f"{OUTPUT.relative_to(REPO)} is {'stale: run `' + COMMAND + '`' if stale else 'up to date'}")
        return int(stale)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
