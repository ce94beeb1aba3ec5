"""`decide` generated per config, so one call runs the whole evaluation in one Python frame.

`assay.compiled.compile_decide` builds the decide function's source for one config: the
targeting conditions are written out as expressions (kind test, then a membership test, a
comparison or a remembered semver verdict), the steps the config does not need are left out
and the enrolled answer is read from a per-bucket table. Shapes with no inline form (`contains`,
lists mixing kinds) call the closures of `assay.compiled.compile_condition`.

The source holds structure only. Everything that comes from the config (attribute names, the
values compared with, salt, layer, overrides) reaches the function as one of its globals, under
a name made here (`name0`, `expected1`), never as source text, so a config cannot change the code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import CodeType, ModuleType
from typing import Any

import mmh3

from assay.bucketing import BUCKETS, LAYER_SEED, TRAFFIC_SEED, VARIANT_SEED
from assay.decisions import LAYER_EXCLUDED, NOT_IN_TRAFFIC, NOT_TARGETED, Assignment
from assay.semver import SemverVerdicts

_speedups: ModuleType | None
try:  # optional: compiled from _speedups.c when the SDK is installed with a C compiler at hand
    from assay import _speedups
except ImportError:  # pragma: no cover - the pure-Python build
    _speedups = None

Decide = Callable[[str, Mapping[str, Any]], Assignment]

# The kind tests of `targeting._kind`, exact classes first (the common case costs one check).
KIND_TESTS = {
    str: "(a.__class__ is str or isinstance(a, str))",
    bool: "a.__class__ is bool",  # bool cannot be subclassed
    float: "(isinstance(a, NUMBER) and a.__class__ is not bool)",
}
ORDER_SYMBOLS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
GLOBALS = {
    "__builtins__": {}, "KeyError": KeyError, "dict": dict, "isinstance": isinstance, "str": str, "bool": bool,
    "NUMBER": (int, float), "Assignment": Assignment, "hash32": mmh3.hash, "NOT_TARGETED": NOT_TARGETED,
    "LAYER_EXCLUDED": LAYER_EXCLUDED, "NOT_IN_TRAFFIC": NOT_IN_TRAFFIC,
}  # fmt: skip


class DecideSource:
    """The body of one decide function and the values it reads, bound by name.

    `read(attribute)` is the expression that puts the attribute's value in `a`: a plain dict is
    subscripted (a missing key rejects the unit), any other mapping goes through `.get`, which
    never calls `__missing__` (a `defaultdict` must not invent the attributes it lacks).
    """

    def __init__(self, bound: dict[str, Any], subscript: bool) -> None:
        self.lines: list[str] = []
        self.bound, self.subscript = bound, subscript

    def bind(self, stem: str, value: Any) -> str:
        """The global name holding `value` (the twins share one name per object)."""
        for name, known in self.bound.items():
            if known is value:
                return name
        name = f"{stem}{len(self.bound)}"
        self.bound[name] = value
        return name

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def reject_unless(self, test: str) -> None:
        self.add(f"if not ({test}):", "    return NOT_TARGETED")

    def read(self, name: str) -> None:
        if self.subscript:
            self.add("try:", f"    a = attributes[{name}]", "except KeyError:", "    return NOT_TARGETED")
        else:
            self.add(f"a = attributes.get({name})")

    def function(self, name: str) -> str:
        return f"def {name}(unit_id, attributes):\n" + "".join(f"    {line}\n" for line in self.lines)


def kind_of(value: Any) -> type | None:
    """`targeting._kind` as a class: bool, float (any number), str, or None for anything else."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, int | float):
        return float
    return str if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class ConditionPlan:
    op: str
    attribute: str
    value: Any
    closure: Callable[[Mapping[str, Any]], bool]  # the condition's predicate (assay.compiled)
    semver: SemverVerdicts | None  # the remembered verdicts of a semver condition


def plan_condition(op: str, attribute: str, value: Any, closure: Callable[[Mapping[str, Any]], bool]) -> ConditionPlan:
    semver = SemverVerdicts(op, value) if op.startswith("semver_") else None
    if op in ("in", "not_in"):
        # A set only for one kind: `frozenset([0, False])` is {0}, which would lose the bool
        # (mixed kinds go to the closure, which compares kind by kind).
        value = frozenset(value) if len({kind_of(item) for item in value}) == 1 else tuple(value)
    return ConditionPlan(op, attribute, value, closure, semver)


def add_condition(source: DecideSource, condition: ConditionPlan) -> None:
    """Reject the unit unless the condition holds."""
    op, value, name = condition.op, condition.value, source.bind("name", condition.attribute)
    if op == "exists":
        source.add(f"if attributes.get({name}) {'is None' if value else 'is not None'}:", "    return NOT_TARGETED")
        return
    if condition.semver is not None:
        add_semver(source, name, condition.semver)
        return
    kind = kind_of(value)
    if op in ("in", "not_in"):
        kinds = {kind_of(item) for item in value}
        kind = kinds.pop() if len(kinds) == 1 else None
    if kind is None or op == "contains" or (op in ORDER_SYMBOLS and kind is bool):
        source.reject_unless(f"{source.bind('holds', condition.closure)}(attributes)")
        return
    source.read(name)
    expected = source.bind("expected", value)
    same_kind = KIND_TESTS[kind]
    if op == "in":
        source.reject_unless(f"{same_kind} and a in {expected}")
    elif op == "not_in":
        source.reject_unless(f"a is not None and not ({same_kind} and a in {expected})")
    elif op == "eq":
        source.reject_unless(f"{same_kind} and a == {expected}")
    elif op == "neq":
        source.reject_unless(f"a is not None and not ({same_kind} and a == {expected})")
    else:
        source.reject_unless(f"{same_kind} and a {ORDER_SYMBOLS[op]} {expected}")


def add_semver(source: DecideSource, name: str, verdict: SemverVerdicts) -> None:
    """Read the verdict remembered for a plain string; compute (and remember) the others."""
    known, compute = source.bind("known", verdict.known), source.bind("verdict", verdict)
    source.read(name)
    source.add(
        "if a.__class__ is str:",
        "    try:",
        f"        if not {known}[a]:",
        "            return NOT_TARGETED",
        "    except KeyError:",
        f"        if not {compute}(a):",
        "            return NOT_TARGETED",
        f"elif not {compute}(a):",
        "    return NOT_TARGETED",
    )  # fmt: skip


@lru_cache(maxsize=256)
def answer_table(variant_ends: tuple[int, ...], variant_keys: tuple[str, ...]) -> tuple[Assignment, ...]:
    """The enrolled answer of every bucket (configs with the same split share one table).

    Variant i owns buckets [end of i-1, end of i); a zero-weight variant owns none."""
    table: list[Assignment] = []
    for key, end in zip(variant_keys, variant_ends, strict=True):
        table.extend([Assignment(key, "hash")] * (end - len(table)))
    return tuple(table)


def generate_decide(
    *, overrides: Mapping[str, str], conditions: Sequence[tuple[str, str, Any, Any]], hash_prefix: str,
    traffic_buckets: int, layer_prefix: str | None, layer_range: tuple[int, int] | None,
    variant_ends: tuple[int, ...], variant_keys: tuple[str, ...], speedups: bool = True,
) -> Decide:  # fmt: skip
    """Decide for a running config; `conditions` are (op, attribute, value, closure). With
    `speedups` (and the C module built), configs of the commonest shape get `c_decide`.

    Two twins are generated: `decide` for plain dicts (subscripts) hands any other mapping to
    `decide_any` (`.get`). The bound values are their globals, the fastest names after locals.
    """
    bound: dict[str, Any] = {}
    plans = [plan_condition(*condition) for condition in conditions]
    overrides = dict(overrides)  # a frozen config: compiled once, like its conditions
    twins = []
    for subscript in (False, True):
        source = DecideSource(bound, subscript)
        if subscript and conditions:
            source.add("if attributes.__class__ is not dict:", "    return decide_any(unit_id, attributes)")
        add_steps(source, overrides, plans)
        add_hashing(source, hash_prefix, traffic_buckets, layer_prefix, layer_range, variant_ends, variant_keys)
        twins.append(source.function("decide" if subscript else "decide_any"))
    namespace = {**GLOBALS, **bound}
    exec(compiled_source("".join(twins)), namespace)  # structure only, see the module doc
    for function in (namespace["decide"], namespace["decide_any"]):
        # Its own copy of the code: the interpreter specializes the copy to this config's globals.
        function.__code__ = function.__code__.replace()
    decide: Decide = namespace["decide"]
    answers = answer_table(variant_ends, variant_keys)
    if speedups and not overrides and layer_prefix is None and traffic_buckets >= BUCKETS:
        return c_decide(plans, hash_prefix, answers, decide) or decide
    return decide


def c_decide(
    plans: Sequence[ConditionPlan], hash_prefix: str, answers: tuple[Assignment, ...], fallback: Decide
) -> Decide | None:
    """The same decide in C (`assay._speedups`, when it was compiled) for a config with no
    overrides, no layer and full traffic whose rules are all string memberships or semver
    comparisons (the commonest shape); None for any other. Anything but a plain dict of
    attributes and a plain str unit id goes to `fallback`, the generated Python decide."""
    if _speedups is None or len(answers) != BUCKETS:
        return None
    conditions: list[tuple[int, str, Any]] = []
    for plan in plans:
        if plan.op == "in" and all(value.__class__ is str for value in plan.value):
            conditions.append((_speedups.IN_STR, plan.attribute, plan.value))
        elif plan.semver is not None:
            conditions.append((_speedups.SEMVER, plan.attribute, plan.semver))
        else:
            return None
    decider: Decide = _speedups.Decider(tuple(conditions), hash_prefix, mmh3.hash, answers, NOT_TARGETED, fallback)
    return decider


@lru_cache(maxsize=1024)
def compiled_source(source: str) -> CodeType:
    """Configs of one shape share their source (the values are not in it): compile it once."""
    return compile(source, "<assay decide>", "exec")


def add_steps(source: DecideSource, overrides: dict[str, str], conditions: list[ConditionPlan]) -> None:
    """Overrides, then targeting."""
    if overrides:
        forced = source.bind("overrides", overrides)
        source.add(f"forced = {forced}.get(unit_id)", "if forced is not None:",
                   "    return Assignment(forced, 'override')")  # fmt: skip
    for condition in conditions:
        add_condition(source, condition)


def add_hashing(
    source: DecideSource, hash_prefix: str, traffic_buckets: int, layer_prefix: str | None,
    layer_range: tuple[int, int] | None, variant_ends: tuple[int, ...], variant_keys: tuple[str, ...],
) -> None:  # fmt: skip
    """Layer slice, traffic, then the variant of the unit's bucket."""
    if layer_prefix is not None:
        if layer_range is None:
            source.add("return LAYER_EXCLUDED")
            return
        start, end = source.bind("start", layer_range[0]), source.bind("end", layer_range[1])
        bucket = f"hash32({source.bind('layer', layer_prefix)} + unit_id, {LAYER_SEED:d}, False) % {BUCKETS:d}"
        source.add(f"if not {start} <= {bucket} < {end}:", "    return LAYER_EXCLUDED")
    salted = source.bind("salt", hash_prefix)
    answers = source.bind("answers", answer_table(variant_ends, variant_keys))
    key = f"{salted} + unit_id"
    if traffic_buckets < BUCKETS:
        source.add(
            f"key = {key}",
            f"if hash32(key, {TRAFFIC_SEED:d}, False) % {BUCKETS:d} >= {source.bind('traffic', traffic_buckets)}:",
            "    return NOT_IN_TRAFFIC",
        )  # fmt: skip
        key = "key"
    source.add(f"return {answers}[hash32({key}, {VARIANT_SEED:d}, False) % {BUCKETS:d}]")
