"""Targeting operators, semantic versions and what missing attributes do."""

from __future__ import annotations

from typing import Any

import pytest
from assay.models import Condition
from assay.semver import compare_semver, parse_semver
from assay.targeting import all_conditions_hold, condition_holds
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError


def holds(op: str, value: Any, attributes: dict[str, Any]) -> bool:
    return condition_holds(Condition(attribute="a", op=op, value=value), attributes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        ("eq", "US", "US", True), ("eq", "US", "CA", False), ("eq", 1, True, False),
        ("eq", 1, 1.0, True), ("eq", "1", 1, False), ("neq", "US", "CA", True),
        ("neq", "US", "US", False), ("in", ["US", "CA"], "CA", True), ("in", ["US"], "FR", False),
        ("in", [1, 2], 2, True), ("not_in", ["US"], "FR", True), ("not_in", ["US"], "US", False),
        ("gt", 10, 11, True), ("gt", 10, 10, False), ("gte", 10, 10, True), ("lt", 10, 9.5, True),
        ("lte", 10, 10, True), ("lte", 10, 10.01, False), ("gt", 10, "11", False),
        ("gt", "2026-01-01", "2026-06-01", True), ("contains", "pro", "enterprise-pro", True),
        ("contains", "beta", ["alpha", "beta"], True), ("contains", "x", ["alpha"], False),
        ("contains", "x", 5, False), ("exists", True, "anything", True),
        ("semver_gte", "2.0.0", "2.0.0", True), ("semver_gte", "2.0.0", "1.9.9", False),
        ("semver_gt", "2.0.0", "2.0.1", True), ("semver_lt", "2.0.0", "2.0.0-beta.1", True),
        ("semver_lte", "1.2", "1.2.0", True), ("semver_eq", "v1.2.3", "1.2.3+build.7", True),
        ("semver_neq", "1.2.3", "1.2.4", True), ("semver_gt", "1.0.0", "not-a-version", False),
        ("semver_gt", "1.0.0", 2, False), ("semver_gt", "1.10.0", "1.9.0", False),
        ("semver_lt", "1.10.0", "1.9.0", True),
    ],
)  # fmt: skip
def test_operator(op: str, value: Any, actual: Any, expected: bool) -> None:
    assert holds(op, value, {"a": actual}) is expected


@pytest.mark.parametrize(
    ("op", "value"),
    [("eq", "x"), ("neq", "x"), ("in", ["x"]), ("not_in", ["x"]), ("gt", 1), ("lte", 1),
     ("contains", "x"), ("exists", True), ("semver_gte", "1.0.0"), ("semver_neq", "1.0.0")],
)  # fmt: skip
def test_missing_attribute_fails_every_condition_but_exists_false(op: str, value: Any) -> None:
    assert holds(op, value, {}) is False
    assert holds(op, value, {"a": None}) is False


def test_exists_false_holds_only_when_absent() -> None:
    assert holds("exists", False, {}) is True
    assert holds("exists", False, {"a": 1}) is False


def test_all_conditions_must_hold() -> None:
    rules = [
        Condition(attribute="country", op="in", value=["US", "CA"]),
        Condition(attribute="app_version", op="semver_gte", value="2.0.0"),
    ]
    assert all_conditions_hold(rules, {"country": "US", "app_version": "2.1.0"})
    assert not all_conditions_hold(rules, {"country": "US", "app_version": "1.9.0"})
    assert not all_conditions_hold(rules, {"country": "FR", "app_version": "2.1.0"})


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [("1.0.0", "1.0.0", 0), ("1.0.0-alpha", "1.0.0", -1), ("1.0.0-alpha", "1.0.0-alpha.1", -1),
     ("1.0.0-alpha.1", "1.0.0-alpha.beta", -1), ("1.0.0-beta.2", "1.0.0-beta.11", -1),
     ("1.0.0-rc.1", "1.0.0", -1), ("2", "1.99.99", 1), ("1.2", "1.2.0", 0)],
)  # fmt: skip
def test_semver_precedence(left: str, right: str, expected: int) -> None:
    assert compare_semver(left, right) == expected
    assert compare_semver(right, left) == -expected


@pytest.mark.parametrize("text", ["", "1.2.3.4", "a.b.c", "1..2", "1.2.3-", "١.٢.٣", "x" * 500])
def test_semver_rejects_non_versions(text: str) -> None:
    assert parse_semver(text) is None


@pytest.mark.parametrize(
    ("op", "value", "message"),
    [("in", [], "list of 1"), ("in", "US", "list of 1"), ("exists", "yes", "true or false"),
     ("semver_gt", "banana", "semantic version"), ("gt", True, "number or a string"),
     ("eq", {"nested": 1}, "string, number or boolean"), ("eq", float("nan"), "finite"),
     ("regex", ".*", "Input should be")],
)  # fmt: skip
def test_bad_conditions_are_rejected_with_a_message(op: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Condition(attribute="a", op=op, value=value)  # type: ignore[arg-type]


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))


@given(
    op=st.sampled_from(["eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "contains",
                        "semver_gte", "semver_lt"]),
    actual=st.one_of(scalars, st.lists(scalars, max_size=5)),
)  # fmt: skip
def test_evaluation_never_raises_on_any_attribute_value(op: str, actual: Any) -> None:
    value: Any = {"in": ["US", 3], "not_in": ["US"], "semver_gte": "1.0.0", "semver_lt": "1.0.0"}.get(op, "US")
    assert holds(op, value, {"a": actual}) in (True, False)
