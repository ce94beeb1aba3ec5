"""Every operation of every service's OpenAPI document, fuzzed with schemathesis against the
real service over HTTP, with the right key for each operation.

Keys: each operation is classified by its tag (KEY_BY_TAG): admin keys for registry and
scorecard operations, sdk keys for assignment and ingestion, and an sdk key for the
statistics calculators (admin or sdk may call them). An operation whose tag is not
classified fails the test, so a new router must be placed here.

The checks and their documented exceptions are in conftest.py (CONFIG). Schemathesis runs
its explicit-example, coverage and fuzzing phases per operation, at most MAX_EXAMPLES
generated cases each, deterministically (fixed seed, no example database).

`schemathesis.pytest.from_fixture` (its lazy pytest integration) cannot run on pytest 9
(it sets `Function._nodeid`, which pytest 9 no longer has), so the tests drive the same
per-operation Hypothesis tests themselves, one subtest per operation.
"""

from __future__ import annotations

from typing import Any

import pytest
from schemathesis.pytest.lazy import get_all_tests

from tests.support.services import ADMIN_KEY, SDK_KEY

KEY_BY_TAG = {
    "experiments": ADMIN_KEY, "scorecards": ADMIN_KEY, "catalog": ADMIN_KEY, "readouts": ADMIN_KEY,
    "health": ADMIN_KEY,
    "assignment": SDK_KEY, "exposures": SDK_KEY, "events": SDK_KEY, "statistics": SDK_KEY,
}  # fmt: skip
INGESTION = {"/v1/exposures": "exposures", "/v1/events": "events"}


def key_for(case: Any) -> str:
    tags = case.operation.tags or []
    keys = {KEY_BY_TAG[t] for t in tags if t in KEY_BY_TAG}
    assert len(keys) == 1, f"{case.operation.label}: classify its tags {tags} in KEY_BY_TAG"
    return keys.pop()


def every_item_answered(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 202 from ingestion accounts for each item sent: accepted, or rejected by index."""
    field = INGESTION.get(case.operation.path)
    if field is None or response.status_code != 202 or not isinstance(case.body, dict):
        return None
    items = case.body.get(field)
    answer = response.json()
    rejected = sorted(r["index"] for r in answer["rejected"])
    assert isinstance(items, list), "a 202 for a body without an item list"
    assert answer["accepted"] + len(rejected) == len(items), (answer, len(items))
    assert rejected == sorted(set(rejected)) and all(0 <= i < len(items) for i in rejected), rejected
    return True


def call(case: Any) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {key_for(case)}"}, additional_checks=[every_item_answered], timeout=30
    )


def fuzz(schema: Any, subtests: pytest.Subtests) -> None:
    operations = 0
    for result in get_all_tests(schema=schema, test_func=call, settings=None, given_kwargs=None):
        operation, test = result.ok()  # an operation the document cannot describe fails here
        operations += 1
        with subtests.test(msg=operation.label):
            test()
    assert operations > 0


def test_assignment_api(assignment_schema: Any, subtests: pytest.Subtests) -> None:
    fuzz(assignment_schema, subtests)


def test_exposure_api(exposure_schema: Any, subtests: pytest.Subtests) -> None:
    fuzz(exposure_schema, subtests)


def test_scorecard_api(scorecard_schema: Any, subtests: pytest.Subtests) -> None:
    fuzz(scorecard_schema, subtests)
