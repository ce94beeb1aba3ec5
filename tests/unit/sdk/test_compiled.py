"""The compiled fast path agrees with the reference semantics (targeting.condition_holds and
the bucketing functions) on golden vectors and on generated inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from assay.bucketing import in_traffic
from assay.compiled import compile_condition
from assay.evaluation import evaluate
from assay.models import Condition, ExperimentConfig
from assay.targeting import condition_holds
from hypothesis import given
from hypothesis import strategies as st

GOLDEN = json.loads((Path(__file__).parents[2] / "golden" / "bucketing.json").read_text())

STRINGS = ["US", "CA", "", "1.2.3", "2.0.0", "2.0.0-beta", "v3", "pro", "enterprise-pro"]
scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.sampled_from([0.0, 1.0, 2.5, -1.0]), st.sampled_from(STRINGS))
attribute_values = st.one_of(st.none(), scalars, st.lists(scalars, max_size=3))


OPS = ["eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "exists",
       "semver_eq", "semver_neq", "semver_gt", "semver_gte", "semver_lt", "semver_lte"]  # fmt: skip


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    op = draw(st.sampled_from(OPS))
    value: Any
    if op == "exists":
        value = draw(st.booleans())
    elif op in ("in", "not_in"):
        value = draw(st.lists(scalars, min_size=1, max_size=4))
    elif op.startswith("semver"):
        value = draw(st.sampled_from(["1.2.3", "2.0.0", "2.0.0-beta", "v3", "1.10"]))
    elif op in ("gt", "gte", "lt", "lte"):
        value = draw(st.one_of(st.integers(-5, 5), st.sampled_from(["US", "m", "2.0.0"])))
    else:
        value = draw(scalars)
    return Condition(attribute="a", op=op, value=value)


@given(condition=conditions(), actual=attribute_values, present=st.booleans())
def test_compiled_condition_matches_reference(condition: Condition, actual: Any, present: bool) -> None:
    attributes = {"a": actual} if present else {}
    assert compile_condition(condition)(attributes) is condition_holds(condition, attributes)


def _golden_configs() -> dict[tuple[str, float, tuple[float, ...]], list[dict[str, Any]]]:
    grouped: dict[tuple[str, float, tuple[float, ...]], list[dict[str, Any]]] = {}
    for case in GOLDEN["cases"]:
        grouped.setdefault((case["salt"], case["traffic"], tuple(case["weights"])), []).append(case)
    return grouped


@pytest.mark.parametrize(("salt", "traffic", "weights"), list(_golden_configs()))
def test_evaluate_matches_golden_vectors(salt: str, traffic: float, weights: tuple[float, ...]) -> None:
    config = ExperimentConfig.model_validate({
        "key": "golden", "salt": salt, "traffic": traffic,
        "variants": [{"key": f"v{i}", "weight": w} for i, w in enumerate(weights)],
    })  # fmt: skip
    for case in _golden_configs()[(salt, traffic, weights)]:
        decision = evaluate(config, case["unit_id"])
        expected = f"v{case['variant_index']}" if case["enrolled"] else None
        assert decision.variant == expected, case


def test_zero_weight_variant_never_assigned() -> None:
    config = ExperimentConfig.model_validate({
        "key": "z", "salt": "z", "variants": [{"key": "a", "weight": 0.5}, {"key": "off", "weight": 0.0},
                                              {"key": "b", "weight": 0.5}]})  # fmt: skip
    seen = {evaluate(config, f"u{i}").variant for i in range(5000)}
    assert seen == {"a", "b"}


def test_traffic_fast_path_agrees_with_reference() -> None:
    for traffic in (0.0001, 0.1, 0.5, 0.9999, 1.0):
        config = ExperimentConfig.model_validate({
            "key": "t", "salt": "traffic-check", "traffic": traffic,
            "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}]})  # fmt: skip
        for i in range(3000):
            unit = f"u{i}"
            assert (evaluate(config, unit).variant is not None) is in_traffic("traffic-check", unit, traffic)
