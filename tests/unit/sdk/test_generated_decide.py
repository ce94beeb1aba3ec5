"""The generated `decide` (assay.codegen) gives the reference answer: `targeting.condition_holds`
for the rules, then the bucketing functions, for every op, kind and mapping a unit may bring."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from assay.bucketing import BUCKETS, choose_variant_index, in_traffic, variant_bucket, variant_ranges
from assay.codegen import answer_table, generate_decide
from assay.decisions import LAYER_EXCLUDED, NOT_IN_TRAFFIC, NOT_RUNNING, NOT_TARGETED, Assignment
from assay.evaluation import evaluate, hashed_variant, in_layer_slice
from assay.models import Condition, ExperimentConfig
from assay.semver import REMEMBERED_VERDICTS, SemverVerdicts, compare_semver
from assay.targeting import all_conditions_hold, condition_holds
from hypothesis import given, settings
from hypothesis import strategies as st


class Tagged(str):
    """A str subclass: the reference counts it as a string."""


class LooksLike:
    """Not a string, yet equal to one and hashed like it: the reference never matches it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return other == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def reference(config: ExperimentConfig, unit_id: str, attributes: Mapping[str, Any] | None) -> Assignment:
    """`evaluate`'s order written with the reference functions only."""
    if config.status != "running":
        return NOT_RUNNING
    forced = config.overrides.get(unit_id)
    if forced is not None:
        return Assignment(forced, "override")
    if not all_conditions_hold(config.targeting, attributes or {}):
        return NOT_TARGETED
    if not in_layer_slice(config, unit_id):
        return LAYER_EXCLUDED
    if not in_traffic(config.salt, unit_id, config.traffic):
        return NOT_IN_TRAFFIC
    return Assignment(hashed_variant(config, unit_id), "hash")


ATTRIBUTES = ["country", "app.version-x"]  # the second is no Python identifier
STRINGS = ["US", "CA", "", "2.0.0", "2.0.0-beta", "1.9.4", "v3", "pro", "enterprise-pro", "m"]
ODD_VALUES = [Tagged("US"), Tagged("2.0.0"), LooksLike("US"), LooksLike("2.0.0"), LooksLike("1"), float("nan")]
scalars = st.one_of(st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, 1.0, 2.5, -1.0]), st.sampled_from(STRINGS))
attribute_values = st.one_of(st.none(), scalars, st.lists(scalars, max_size=3), st.sampled_from(ODD_VALUES))
OPS = ["eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "exists",
       "semver_eq", "semver_neq", "semver_gt", "semver_gte", "semver_lt", "semver_lte"]  # fmt: skip
WEIGHTS = [(0.5, 0.5), (0.0, 1.0), (1.0, 0.0), (0.5, 0.0, 0.5), (0.2, 0.3, 0.5), (0.1, 0.0, 0.0, 0.9)]
LAYERS = [(None, None), ("checkout", (0, 5000)), ("checkout", (2500, 10_000)), ("checkout", None)]
UNITS = [f"u{i}" for i in range(24)]


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(OPS))
    value: Any
    if op == "exists":
        value = draw(st.booleans())
    elif op in ("in", "not_in"):  # one kind (written inline) or mixed kinds (the closure)
        value = draw(st.one_of(st.lists(st.sampled_from(STRINGS), min_size=1, max_size=3),
                               st.lists(st.integers(-3, 3), min_size=1, max_size=3),
                               st.lists(scalars, min_size=1, max_size=4)))  # fmt: skip
    elif op.startswith("semver"):
        value = draw(st.sampled_from(["1.2.3", "2.0.0", "2.0.0-beta", "v3", "1.10"]))
    elif op in ("gt", "gte", "lt", "lte"):
        value = draw(st.one_of(st.integers(-3, 3), st.sampled_from([0.5, "US", "m", "2.0.0"])))
    else:
        value = draw(scalars)
    return {"attribute": draw(st.sampled_from(ATTRIBUTES)), "op": op, "value": value}


@st.composite
def configs(draw: st.DrawFn) -> ExperimentConfig:
    weights = draw(st.sampled_from(WEIGHTS))
    layer, layer_range = draw(st.sampled_from(LAYERS))
    variants = [{"key": f"v{i}", "weight": weight} for i, weight in enumerate(weights)]
    overrides = draw(st.dictionaries(st.sampled_from(UNITS), st.sampled_from([v["key"] for v in variants]), max_size=2))
    return ExperimentConfig.model_validate({
        "key": "generated", "salt": draw(st.sampled_from(["s", "x'); raise SystemExit #\n\"{}"])),
        "status": draw(st.sampled_from(["running", "running", "running", "paused"])),
        "traffic": draw(st.sampled_from([1.0, 0.9999, 0.5, 0.1, 0.0001])), "variants": variants, "layer": layer,
        "layer_range": layer_range, "targeting": draw(st.lists(conditions(), max_size=3)), "overrides": overrides,
    })  # fmt: skip


def as_mapping(attributes: dict[str, Any], shape: str) -> Mapping[str, Any] | None:
    if shape == "proxy":
        return MappingProxyType(attributes)
    if shape == "defaultdict":  # a missing attribute must stay missing, not become "US"
        return defaultdict(lambda: "US", attributes)
    return None if shape == "none" else attributes


@settings(max_examples=400, deadline=None, database=None)
@given(config=configs(), units=st.lists(st.dictionaries(st.sampled_from(ATTRIBUTES), attribute_values), min_size=1,
                                        max_size=len(UNITS)),
       shape=st.sampled_from(["dict", "dict", "proxy", "defaultdict", "none"]))  # fmt: skip
def test_generated_decide_matches_reference(config: ExperimentConfig, units: list[dict[str, Any]], shape: str) -> None:
    for unit_id, attributes in zip(UNITS, units, strict=False):
        expected = reference(config, unit_id, as_mapping(dict(attributes), shape))
        assert evaluate(config, unit_id, as_mapping(attributes, shape)) == expected, (unit_id, attributes)


def test_two_rule_experiment_matches_reference_over_many_units() -> None:
    """The benchmark's experiment (`country in [US, CA]`, `app_version semver_gte 2.0.0`)."""
    config = ExperimentConfig.model_validate({
        "key": "bench", "salt": "bench", "variants": [{"key": "control", "weight": 0.5},
                                                      {"key": "treatment", "weight": 0.5}],
        "targeting": [{"attribute": "country", "op": "in", "value": ["US", "CA"]},
                      {"attribute": "app_version", "op": "semver_gte", "value": "2.0.0"}],
    })  # fmt: skip
    countries = ["US", "CA", "DE", Tagged("US"), LooksLike("US"), None, 1]
    versions = ["2.0.0", "1.9.4", "2.4.1", "2.0.0-rc.1", "v2", "junk", Tagged("2.1.0"), LooksLike("2.0.0"), None, 2]
    seen = set()
    for i in range(20_000):
        attributes = {"country": countries[i % 7], "app_version": versions[i * 7 // 3 % 10]}
        if i % 13 == 0:
            del attributes["app_version"]
        answer = evaluate(config, f"user-{i}", attributes)
        assert answer == reference(config, f"user-{i}", attributes), attributes
        seen.add(answer.reason)
    assert seen == {"hash", "not_targeted"}


INLINE_SHAPES = [
    ("eq", "US"), ("eq", 1), ("eq", True), ("eq", 2.5), ("neq", "US"), ("neq", 0), ("neq", False),
    ("in", ["US", "CA"]), ("in", [1, 2.5]), ("in", [True]), ("not_in", ["US"]), ("not_in", [0, 1]),
    ("not_in", [False]), ("gt", 1), ("gte", 0.5), ("lt", "m"), ("lte", "US"), ("exists", True), ("exists", False),
    ("semver_eq", "2.0.0"), ("semver_neq", "1.2.3"), ("semver_gt", "1.10"), ("semver_gte", "2.0.0"),
    ("semver_lt", "v3"), ("semver_lte", "2.0.0-beta"),
]  # fmt: skip
INLINE_VALUES = [None, True, False, 0, 1, 1.0, 2.5, -1, "US", "CA", "m", "", "2.0.0", "1.9.4", "2.0.0-beta",
                 Tagged("US"), Tagged("2.0.0"), LooksLike("US"), LooksLike("2.0.0"), LooksLike("1"), ["US"],
                 float("nan")]  # fmt: skip


def never_called(attributes: Mapping[str, Any]) -> bool:
    raise AssertionError("an inline condition called its closure")


@pytest.mark.parametrize(("op", "value"), INLINE_SHAPES)
def test_inline_condition_needs_no_closure_and_matches_reference(op: str, value: Any) -> None:
    condition = Condition(attribute="a", op=op, value=value)
    decide = generate_decide(
        overrides={}, conditions=[(op, "a", value, never_called)], hash_prefix="s:", traffic_buckets=BUCKETS,
        layer_prefix=None, layer_range=None, variant_ends=(BUCKETS,), variant_keys=("only",),
    )  # fmt: skip
    for actual in INLINE_VALUES:
        for attributes in ({"a": actual}, MappingProxyType({"a": actual})):
            enrolled = decide("u1", attributes).reason == "hash"
            assert enrolled is condition_holds(condition, attributes), (actual, type(attributes))
    assert decide("u1", {}).reason == ("hash" if condition_holds(condition, {}) else "not_targeted")


def test_config_text_never_becomes_code() -> None:
    hostile = "'); raise SystemExit('boom') #\n    return None\n\"\"\"{}"
    config = ExperimentConfig.model_validate({
        "key": "hostile", "salt": hostile, "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
        "overrides": {hostile: "b"}, "targeting": [{"attribute": "a.b-c", "op": "in", "value": [hostile, "x"]},
                                                   {"attribute": "a.b-c", "op": "neq", "value": hostile + "!"}],
    })  # fmt: skip
    assert evaluate(config, hostile, {}) == Assignment("b", "override")
    for unit in ("u1", "u2", "u3", "u4"):
        assert evaluate(config, unit, {"a.b-c": hostile}) == reference(config, unit, {"a.b-c": hostile})
        assert evaluate(config, unit, {"a.b-c": "y"}) == NOT_TARGETED


@pytest.mark.parametrize("weights", WEIGHTS)
def test_answer_table_holds_each_buckets_variant(weights: tuple[float, ...]) -> None:
    keys = tuple(f"v{i}" for i in range(len(weights)))
    table = answer_table(tuple(end for _, end in variant_ranges(weights)), keys)
    assert len(table) == BUCKETS
    assert [answer.variant for answer in table] == [keys[choose_variant_index(b, weights)] for b in range(BUCKETS)]
    assert {answer.reason for answer in table} == {"hash"}


def test_variant_comes_from_the_units_bucket() -> None:
    config = ExperimentConfig.model_validate({
        "key": "z", "salt": "z", "variants": [{"key": "a", "weight": 0.25}, {"key": "off", "weight": 0.0},
                                              {"key": "b", "weight": 0.75}]})  # fmt: skip
    for i in range(2000):
        bucket = variant_bucket("z", f"u{i}")
        assert evaluate(config, f"u{i}").variant == ("a" if bucket < 2500 else "b")


def test_semver_verdicts_agree_with_compare_semver_and_stay_bounded() -> None:
    verdict = SemverVerdicts("semver_gte", "2.0.0")
    versions = [f"{major}.{minor}.{patch}" for major in range(1, 4) for minor in range(40) for patch in range(40)]
    for version in versions + versions[:100]:
        assert verdict(version) is (compare_semver(version, "2.0.0") >= 0)
        assert len(verdict.known) <= REMEMBERED_VERDICTS
    assert verdict(Tagged("9.9.9")) is True and "9.9.9" not in verdict.known  # only plain strings are remembered
    assert verdict(LooksLike("2.0.0")) is False and verdict(None) is False


# --- the C decide (assay._speedups) against the generated Python one ---------------------

MEMBERSHIP_AND_SEMVER = st.one_of(
    st.builds(lambda attribute, values: {"attribute": attribute, "op": "in", "value": values},
              st.sampled_from(ATTRIBUTES), st.lists(st.sampled_from(STRINGS), min_size=1, max_size=3)),
    st.builds(lambda attribute, op, value: {"attribute": attribute, "op": op, "value": value},
              st.sampled_from(ATTRIBUTES), st.sampled_from([op for op in OPS if op.startswith("semver")]),
              st.sampled_from(["1.2.3", "2.0.0", "2.0.0-beta", "v3", "1.10"])),
)  # fmt: skip


class Sneaky(dict):  # type: ignore[type-arg]
    """A dict subclass: the C decide hands it to the Python one."""


def both_decides(config: ExperimentConfig) -> tuple[Any, Any]:
    compiled = config.compiled
    fields = {"overrides": compiled.overrides, "hash_prefix": compiled.hash_prefix,
              "traffic_buckets": compiled.traffic_buckets, "layer_prefix": compiled.layer_prefix,
              "layer_range": compiled.layer_range, "variant_ends": compiled.variant_ends,
              "variant_keys": compiled.variant_keys,
              "conditions": [(c.op, c.attribute, c.value, never_called) for c in config.targeting]}  # fmt: skip
    return generate_decide(**fields, speedups=True), generate_decide(**fields, speedups=False)


def outcome(decide: Any, unit_id: Any, attributes: Any) -> Any:
    try:
        return decide(unit_id, attributes)
    except Exception as exc:  # the same error, from either
        return type(exc)


def test_the_c_decide_is_built_here_and_taken_for_the_common_shape_only() -> None:
    """CI machines have a C compiler: the speedups must be there (else this aim's figure is
    the pure-Python one without anyone noticing)."""
    common: dict[str, Any] = {
        "key": "c", "salt": "c", "variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
        "targeting": [{"attribute": "country", "op": "in", "value": ["US"]},
                      {"attribute": "v", "op": "semver_gte", "value": "2.0.0"}],
    }  # fmt: skip
    assert type(ExperimentConfig.model_validate(common).compiled.decide).__name__ == "Decider"
    for other in ({"overrides": {"u": "a"}}, {"traffic": 0.5}, {"layer": "l", "layer_range": (0, 10)},
                  {"targeting": [{"attribute": "country", "op": "eq", "value": "US"}]}):  # fmt: skip
        config = ExperimentConfig.model_validate({**common, **other})
        assert type(config.compiled.decide).__name__ == "function", other


@settings(max_examples=300, deadline=None, database=None)
@given(rules=st.lists(MEMBERSHIP_AND_SEMVER, max_size=3), weights=st.sampled_from(WEIGHTS),
       salt=st.sampled_from(["s", "x'); raise SystemExit #\n\"{}", "ünïcødé"]),
       units=st.lists(st.tuples(st.one_of(st.sampled_from(UNITS), st.sampled_from([Tagged("u1"), 7, None, "ü"])),
                                st.dictionaries(st.sampled_from(ATTRIBUTES), attribute_values),
                                st.sampled_from(["dict", "dict", "dict", "sneaky", "proxy", "defaultdict"])),
                      min_size=1, max_size=30))  # fmt: skip
def test_c_decide_answers_as_the_python_one(
    rules: list[dict[str, Any]], weights: tuple[float, ...], salt: str, units: list[tuple[Any, dict[str, Any], str]]
) -> None:
    config = ExperimentConfig.model_validate({
        "key": "c", "salt": salt, "targeting": rules,
        "variants": [{"key": f"v{i}", "weight": weight} for i, weight in enumerate(weights)],
    })  # fmt: skip
    in_c, in_python = both_decides(config)
    assert type(in_c).__name__ == "Decider"
    for unit_id, attributes, shape in units:
        given_attributes = Sneaky(attributes) if shape == "sneaky" else as_mapping(attributes, shape)
        assert outcome(in_c, unit_id, given_attributes) == outcome(in_python, unit_id, given_attributes), (
            unit_id, attributes, shape)  # fmt: skip


def test_c_decide_remembers_semver_verdicts_like_the_python_one() -> None:
    config = ExperimentConfig.model_validate({
        "key": "c", "salt": "c", "variants": [{"key": "a", "weight": 1.0}, {"key": "b", "weight": 0.0}],
        "targeting": [{"attribute": "v", "op": "semver_gte", "value": "2.0.0"}],
    })  # fmt: skip
    in_c, _ = both_decides(config)
    for _ in range(3):
        assert in_c("u", {"v": "2.1.0"}).reason == "hash"
        assert in_c("u", {"v": "1.0.0"}) == NOT_TARGETED
        assert in_c("u", {"v": Tagged("2.5.0")}).reason == "hash"
        assert in_c("u", {"v": LooksLike("2.5.0")}) == NOT_TARGETED
        assert in_c("u", {}) == NOT_TARGETED


def test_c_decide_refuses_malformed_plans() -> None:
    speedups = pytest.importorskip("assay._speedups")
    answers = answer_table((BUCKETS,), ("only",))
    with pytest.raises(TypeError):
        speedups.Decider(((speedups.IN_STR, "a", ["US"]),), "s:", lambda *a: 0, answers, NOT_TARGETED, print)
    with pytest.raises(ValueError):
        speedups.Decider(((9, "a", frozenset()),), "s:", lambda *a: 0, answers, NOT_TARGETED, print)
    with pytest.raises(TypeError):
        speedups.Decider((), "s:", lambda *a: 0, (), NOT_TARGETED, print)


def test_a_copy_with_other_fields_decides_by_its_own_fields() -> None:
    """pydantic's model_copy carries cached values along; `compiled` must not be one of them."""
    config = ExperimentConfig.model_validate({
        "key": "c", "salt": "c", "variants": [{"key": "a", "weight": 1.0}, {"key": "b", "weight": 0.0}],
        "targeting": [{"attribute": "country", "op": "in", "value": ["US"]}],
    })  # fmt: skip
    assert evaluate(config, "u", {"country": "DE"}) == NOT_TARGETED  # compiled now
    paused = config.model_copy(update={"status": "paused"})
    assert evaluate(paused, "u", {"country": "US"}) == NOT_RUNNING
    assert evaluate(config, "u", {"country": "US"}).reason == "hash"


@pytest.mark.parametrize("op", ["in", "not_in"])
@pytest.mark.parametrize("values", [[0, False], [False, 0], [1, True, "1"], [1.0, 1], [True, 1.0]])
def test_a_membership_of_equal_values_of_two_kinds_keeps_both(op: str, values: list[Any]) -> None:
    """`0 == False` in Python, so a set of [0, False] holds only one of them; the reference
    compares kind by kind, and a bool attribute must still match its bool (found by the
    property test above: `in [0, False]` with False rejected the unit)."""
    config = ExperimentConfig.model_validate({
        "key": "generated", "salt": "s", "status": "running", "traffic": 1.0,
        "variants": [{"key": "v0", "weight": 0.5}, {"key": "v1", "weight": 0.5}],
        "targeting": [{"attribute": "country", "op": op, "value": values}],
    })  # fmt: skip
    for actual in (False, True, 0, 1, 1.0, "1", "0", None):
        attributes = {"country": actual}
        assert evaluate(config, "u0", attributes) == reference(config, "u0", attributes), actual
