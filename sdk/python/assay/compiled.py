"""Experiment configs compiled for fast evaluation.

`targeting.condition_holds` and `bucketing` are the reference semantics; this module turns
a config into closures, precomputed bucket bounds and one generated `decide` function
(`assay.codegen`) once, so evaluating a unit does no parsing and no allocation beyond the hash
key. Tests check it agrees with the reference.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import mmh3

from assay.bucketing import BUCKETS, LAYER_SEED, TRAFFIC_SEED, VARIANT_SEED, buckets_for_share, variant_ranges
from assay.codegen import Decide, generate_decide
from assay.decisions import NOT_RUNNING
from assay.semver import SemverVerdicts

Predicate = Callable[[Mapping[str, Any]], bool]
_ORDER = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
_SEMVER_OPS = ("semver_eq", "semver_neq", "semver_gt", "semver_gte", "semver_lt", "semver_lte")


# What compiling reads from the config models. They are described here, not imported, because
# `assay.models` builds its `compiled` property from this module: the dependency runs one way.
class ConditionSpec(Protocol):
    @property
    def attribute(self) -> str: ...
    @property
    def op(self) -> str: ...
    @property
    def value(self) -> Any: ...


class WeightedVariant(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def weight(self) -> float: ...


class ExperimentSpec(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def variants(self) -> Sequence[WeightedVariant]: ...
    @property
    def traffic(self) -> float: ...
    @property
    def salt(self) -> str: ...
    @property
    def layer(self) -> str | None: ...
    @property
    def layer_range(self) -> tuple[int, int] | None: ...
    @property
    def targeting(self) -> Sequence[ConditionSpec]: ...
    @property
    def overrides(self) -> Mapping[str, str]: ...


def _kind(value: Any) -> type | None:
    """bool, number (int and float alike), str or None for anything else."""
    cls = value.__class__
    if cls is bool or cls is str:
        return cls
    if cls is int or cls is float:
        return float
    if isinstance(value, bool):
        return bool
    if isinstance(value, int | float):
        return float
    return str if isinstance(value, str) else None


def _membership(name: str, values: list[Any], negate: bool) -> Predicate:
    if not negate and all(value.__class__ is str for value in values):
        # The common case (`country in [US, CA]`): only a string can match a string.
        strings = frozenset(values)

        def holds_string(attributes: Mapping[str, Any]) -> bool:
            actual = attributes.get(name)
            return (actual.__class__ is str or isinstance(actual, str)) and actual in strings

        return holds_string
    by_kind: dict[type | None, frozenset[Any]] = {}
    for value in values:
        by_kind[_kind(value)] = by_kind.get(_kind(value), frozenset()) | {value}

    def holds(attributes: Mapping[str, Any]) -> bool:
        actual = attributes.get(name)
        if actual is None:
            return False
        return (actual in by_kind.get(_kind(actual), ())) is not negate

    return holds


def _equality(name: str, expected: Any, negate: bool) -> Predicate:
    kind = _kind(expected)

    def holds(attributes: Mapping[str, Any]) -> bool:
        actual = attributes.get(name)
        if actual is None:
            return False
        return (_kind(actual) is kind and actual == expected) is not negate

    return holds


def _ordered(name: str, op: str, expected: Any) -> Predicate:
    compare, kind = _ORDER[op], _kind(expected)

    def holds(attributes: Mapping[str, Any]) -> bool:
        actual = attributes.get(name)
        return actual is not None and _kind(actual) is kind and compare(actual, expected)

    return holds


def _semver(name: str, op: str, expected: str) -> Predicate:
    verdict = SemverVerdicts(op, expected)
    known = verdict.known

    def holds(attributes: Mapping[str, Any]) -> bool:
        actual = attributes.get(name)
        if actual.__class__ is str:
            remembered = known.get(actual)
            if remembered is not None:
                return remembered
        return verdict(actual)

    return holds


def _contains(name: str, expected: Any) -> Predicate:
    kind = _kind(expected)

    def holds(attributes: Mapping[str, Any]) -> bool:
        actual = attributes.get(name)
        if isinstance(actual, str):
            return isinstance(expected, str) and expected in actual
        if isinstance(actual, list):
            return any(_kind(item) is kind and item == expected for item in actual)
        return False

    return holds


def compile_condition(condition: ConditionSpec) -> Predicate:
    name, op, value = condition.attribute, condition.op, condition.value
    if op == "exists":
        return lambda attributes: (attributes.get(name) is not None) is bool(value)
    if op in ("in", "not_in"):
        return _membership(name, value, negate=op == "not_in")
    if op in ("eq", "neq"):
        return _equality(name, value, negate=op == "neq")
    if op in _ORDER:
        return _ordered(name, op, value)
    if op in _SEMVER_OPS:
        return _semver(name, op, value)
    if op == "contains":
        return _contains(name, value)
    raise ValueError(f"unknown targeting op {op!r}")


@dataclass(frozen=True, slots=True)
class CompiledExperiment:
    running: bool
    overrides: Mapping[str, str]
    predicates: tuple[Predicate, ...]
    hash_prefix: str
    traffic_buckets: int
    layer_prefix: str | None
    layer_range: tuple[int, int] | None
    variant_ends: tuple[int, ...]
    variant_keys: tuple[str, ...]
    decide: Decide  # the whole `evaluate` for this config, see `compile_decide`

    def eligible(self, attributes: Mapping[str, Any]) -> bool:
        return all(predicate(attributes) for predicate in self.predicates)

    def in_layer(self, unit_id: str) -> bool:
        if self.layer_prefix is None:
            return True
        if self.layer_range is None:
            return False
        bucket = mmh3.hash(self.layer_prefix + unit_id, LAYER_SEED, signed=False) % BUCKETS
        return self.layer_range[0] <= bucket < self.layer_range[1]

    def in_traffic(self, unit_id: str) -> bool:
        if self.traffic_buckets >= BUCKETS:
            return True
        return mmh3.hash(self.hash_prefix + unit_id, TRAFFIC_SEED, signed=False) % BUCKETS < self.traffic_buckets

    def variant(self, unit_id: str) -> str:
        bucket = mmh3.hash(self.hash_prefix + unit_id, VARIANT_SEED, signed=False) % BUCKETS
        return self.variant_keys[bisect.bisect_right(self.variant_ends, bucket)]


def compile_experiment(config: ExperimentSpec) -> CompiledExperiment:
    ranges = variant_ranges([v.weight for v in config.variants])
    fields: dict[str, Any] = {
        "running": config.status == "running",
        "overrides": config.overrides,
        "predicates": tuple(compile_condition(c) for c in config.targeting),
        "hash_prefix": f"{config.salt}:",
        "traffic_buckets": buckets_for_share(config.traffic),
        "layer_prefix": None if config.layer is None else f"layer:{config.layer}:",
        "layer_range": config.layer_range,
        # Zero-weight variants have empty ranges; bisect over range ends skips them.
        "variant_ends": tuple(end for _, end in ranges),
        "variant_keys": tuple(v.key for v in config.variants),
    }
    return CompiledExperiment(**fields, decide=compile_decide(**fields, conditions=config.targeting))


def compile_decide(
    *, running: bool, overrides: Mapping[str, str], predicates: tuple[Predicate, ...], hash_prefix: str,
    traffic_buckets: int, layer_prefix: str | None, layer_range: tuple[int, int] | None,
    variant_ends: tuple[int, ...], variant_keys: tuple[str, ...], conditions: Sequence[ConditionSpec],
) -> Decide:  # fmt: skip
    """`evaluate` for one config as one generated function (`assay.codegen`): the steps this
    config does not need are left out, its targeting `conditions` are written inline (their
    closures, `predicates`, are called only for the shapes with no inline form), and the
    enrolled answer of every bucket is built here, so a call allocates nothing but the hash key."""
    if not running:
        return lambda unit_id, attributes: NOT_RUNNING
    return generate_decide(
        overrides=overrides, hash_prefix=hash_prefix, traffic_buckets=traffic_buckets, layer_prefix=layer_prefix,
        layer_range=layer_range, variant_ends=variant_ends, variant_keys=variant_keys,
        conditions=[(c.op, c.attribute, c.value, p) for c, p in zip(conditions, predicates, strict=True)],
    )  # fmt: skip
