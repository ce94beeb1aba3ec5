"""Targeting: every condition must hold. No user-given regular expressions (ReDoS).

A missing attribute fails every condition except `exists: false`: Assay never enrolls a
unit on the strength of what it does not know about it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from assay.models import Condition
from assay.semver import compare_semver

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le,
}  # fmt: skip
_SEMVER: dict[str, Callable[[int], bool]] = {
    "semver_eq": lambda c: c == 0,
    "semver_neq": lambda c: c != 0,
    "semver_gt": lambda c: c > 0,
    "semver_gte": lambda c: c >= 0,
    "semver_lt": lambda c: c < 0,
    "semver_lte": lambda c: c <= 0,
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _equal(actual: Any, expected: Any) -> bool:
    """Equality that never treats True as 1 or '1' as 1."""
    return _kind(actual) == _kind(expected) and actual == expected


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        return expected in actual
    if isinstance(actual, list):
        return any(_equal(item, expected) for item in actual)
    return False


def _ordered(op: str, actual: Any, expected: Any) -> bool:
    kind = _kind(expected)
    if kind not in ("number", "string") or _kind(actual) != kind:
        return False
    return _ORDER[op](actual, expected)


def condition_holds(condition: Condition, attributes: Mapping[str, Any]) -> bool:
    op, expected = condition.op, condition.value
    present = condition.attribute in attributes and attributes[condition.attribute] is not None
    if op == "exists":
        return present == bool(expected)
    if not present:
        return False
    actual = attributes[condition.attribute]
    if op == "eq":
        return _equal(actual, expected)
    if op == "neq":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, item) for item in expected)
    if op == "not_in":
        return not any(_equal(actual, item) for item in expected)
    if op == "contains":
        return _contains(actual, expected)
    if op in _ORDER:
        return _ordered(op, actual, expected)
    if op in _SEMVER:
        comparison = compare_semver(actual, expected) if isinstance(actual, str) else None
        return comparison is not None and _SEMVER[op](comparison)
    raise ValueError(f"unknown targeting op {op!r}")


def all_conditions_hold(conditions: Iterable[Condition], attributes: Mapping[str, Any]) -> bool:
    return all(condition_holds(c, attributes) for c in conditions)
