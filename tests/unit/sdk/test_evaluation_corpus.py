"""The evaluation corpus (tests/golden/evaluation.json) through the SDK: the pure functions
(`evaluate`, then `apply_sticky` with the stored variant) and local mode (`decide_locally`
with a sticky store). tests/integration/assignment/test_evaluation_corpus.py runs the same
cases through the assignment service; both must give the same variant and reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest
from assay.bucketing import BUCKETING_VERSION, BUCKETS
from assay.evaluation import UNKNOWN_EXPERIMENT, Reason, apply_sticky, evaluate
from assay.local import decide_locally
from assay.models import ExperimentConfig, TargetingOp
from assay.sticky import InMemoryStickyStore

from tests.golden.generate_evaluation import build

CORPUS = json.loads((Path(__file__).parents[2] / "golden" / "evaluation.json").read_text())
MISSING_KEY = "no-such-experiment"


def config_of(case: dict[str, Any]) -> ExperimentConfig | None:
    return None if case["experiment"] is None else ExperimentConfig.model_validate(case["experiment"])


def test_corpus_matches_this_bucketing_version_and_its_generator() -> None:
    assert (CORPUS["bucketing_version"], CORPUS["buckets"]) == (BUCKETING_VERSION, BUCKETS)
    assert build() == CORPUS, "evaluation.json is stale: python -m tests.golden.generate_evaluation"


def test_corpus_covers_every_reason_and_targeting_op() -> None:
    reasons = {case["expected"]["reason"] for case in CORPUS["cases"]}
    assert reasons == set(get_args(Reason))
    ops = {c["op"] for case in CORPUS["cases"] if case["experiment"] for c in case["experiment"]["targeting"]}
    assert ops == set(get_args(TargetingOp))
    assert any(case["sticky"] for case in CORPUS["cases"] if case["expected"]["reason"] == "override")
    assert any(case["sticky"] for case in CORPUS["cases"] if case["expected"]["reason"] == "not_running")


@pytest.mark.parametrize("case", CORPUS["cases"], ids=lambda case: case["name"])
def test_pure_evaluation(case: dict[str, Any]) -> None:
    config = config_of(case)
    if config is None:
        answer = UNKNOWN_EXPERIMENT
    else:
        answer = apply_sticky(config, evaluate(config, case["unit_id"], case["attributes"]), case["sticky"])
    assert answer.to_dict() == case["expected"]


@pytest.mark.parametrize("case", CORPUS["cases"], ids=lambda case: case["name"])
def test_local_mode_with_a_sticky_store(case: dict[str, Any]) -> None:
    config = config_of(case)
    experiments = {} if config is None else {config.key: config}
    key = MISSING_KEY if config is None else config.key
    store = InMemoryStickyStore()
    if case["sticky"] is not None:
        store.set_if_absent(case["unit_id"], key, case["sticky"])
    first = decide_locally(experiments, key, case["unit_id"], case["attributes"], store)
    assert first.to_dict() == case["expected"]
    again = decide_locally(experiments, key, case["unit_id"], case["attributes"], store)
    if first.reason == "hash" and case["sticky"] is None:  # it was stored: from now on it is sticky
        assert again.to_dict() == {"variant": first.variant, "reason": "sticky"}
    else:
        assert again == first
