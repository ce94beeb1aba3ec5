"""Regenerate `evaluation.json`: the evaluation corpus both the SDK and the service must agree on.

Each case is one experiment config (as `GET /v1/config` serves it, plus `layer_share`, which
the service needs to allocate the same `layer_range`), one unit with its attributes and,
optionally, the variant a sticky store already holds for it; the expected answer is the
variant and the reason. `tests/unit/sdk/test_evaluation_corpus.py` runs the cases through
the SDK's pure evaluation and its local mode; `tests/integration/assignment/
test_evaluation_corpus.py` runs them through the real service (HTTP, real Redis).

The case inputs are written here by hand; the expected answers come from the current SDK, so
run this only when a semantic change is intended (like the bucketing vectors, a diff here
means deployed SDKs and services would answer differently):

    python -m tests.golden.generate_evaluation
"""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

from assay.bucketing import BUCKETING_VERSION, BUCKETS, buckets_for_share, in_traffic, layer_bucket
from assay.evaluation import hashed_variant
from assay.local import decide_locally
from assay.models import ExperimentConfig
from assay.sticky import InMemoryStickyStore

TWO = [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}]
THREE = [{"key": "a", "weight": 0.2}, {"key": "b", "weight": 0.3}, {"key": "c", "weight": 0.5}]


def experiment(key: str, **fields: Any) -> dict[str, Any]:
    """A config with the defaults the service gives a new experiment (salt = key, full traffic)."""
    config: dict[str, Any] = {"key": key, "status": "running", "variants": TWO, "traffic": 1.0, "salt": key,
                              "layer": None, "layer_range": None, "targeting": [], "overrides": {}}  # fmt: skip
    config.update(fields)
    if config.get("layer_share") is not None:  # the service gives the first experiment of a layer its start
        config["layer_range"] = [0, buckets_for_share(config["layer_share"])]
    return config


def first_unit(prefix: str, wanted: Callable[[str], bool]) -> str:
    """The first `<prefix>-<n>` for which `wanted` holds: cases name units by property, not luck."""
    return next(unit for unit in (f"{prefix}-{n}" for n in count()) if wanted(unit))


def case(name: str, config: dict[str, Any] | None, unit_id: str, attributes: dict[str, Any] | None = None,
         sticky: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"name": name, "experiment": config, "unit_id": unit_id, "attributes": attributes or {},
            "sticky": sticky}  # fmt: skip


def targeting_cases() -> list[dict[str, Any]]:
    """Every targeting op, holding and not holding, plus missing attributes and mixed types."""
    ops: list[tuple[str, str, Any, list[tuple[str, dict[str, Any]]]]] = [
        (
            "eq",
            "country",
            "US",
            [
                ("equal", {"country": "US"}),
                ("other", {"country": "CA"}),
                ("missing", {}),
                ("case differs", {"country": "us"}),
            ],
        ),
        ("eq", "age", 30, [("equal number", {"age": 30}), ("float equal", {"age": 30.0}), ("string", {"age": "30"})]),
        ("eq", "beta", True, [("true", {"beta": True}), ("one is not true", {"beta": 1})]),
        ("neq", "country", "US", [("other", {"country": "CA"}), ("equal", {"country": "US"}), ("missing", {})]),
        (
            "in",
            "country",
            ["US", "CA"],
            [
                ("listed", {"country": "CA"}),
                ("unlisted", {"country": "DE"}),
                ("missing", {}),
                ("list attribute", {"country": ["DE", "US"]}),
            ],
        ),
        (
            "not_in",
            "country",
            ["US", "CA"],
            [("unlisted", {"country": "DE"}), ("listed", {"country": "US"}), ("missing", {})],
        ),
        ("gt", "age", 18, [("above", {"age": 19}), ("equal", {"age": 18}), ("string", {"age": "19"}), ("missing", {})]),
        ("gte", "age", 18, [("equal", {"age": 18}), ("below", {"age": 17.5})]),
        ("lt", "score", 0.5, [("below", {"score": 0.25}), ("equal", {"score": 0.5})]),
        ("lte", "score", 0.5, [("equal", {"score": 0.5}), ("above", {"score": 0.75})]),
        ("gt", "plan", "m", [("later string", {"plan": "pro"}), ("earlier string", {"plan": "basic"})]),
        (
            "contains",
            "email",
            "@example.com",
            [("substring", {"email": "ann@example.com"}), ("no substring", {"email": "ann@example.org"})],
        ),
        ("contains", "tags", "vip", [("list member", {"tags": ["new", "vip"]}), ("not a member", {"tags": ["new"]})]),
        ("exists", "platform", True, [("present", {"platform": "ios"}), ("null", {"platform": None}), ("missing", {})]),
        ("exists", "platform", False, [("missing", {}), ("present", {"platform": "ios"})]),
        (
            "semver_gte",
            "app_version",
            "2.10.0",
            [
                ("newer", {"app_version": "2.10.1"}),
                ("numeric not lexical", {"app_version": "2.9.9"}),
                ("not a version", {"app_version": "latest"}),
            ],
        ),
        (
            "semver_lt",
            "app_version",
            "1.0.0",
            [("prerelease first", {"app_version": "1.0.0-beta.2"}), ("release", {"app_version": "1.0.0"})],
        ),
        (
            "semver_eq",
            "app_version",
            "1.2.3",
            [("equal", {"app_version": "1.2.3"}), ("build ignored", {"app_version": "1.2.3+build.7"})],
        ),
        ("semver_neq", "app_version", "1.2.3", [("other", {"app_version": "1.2.4"})]),
        ("semver_gt", "app_version", "1.2.3", [("minor above", {"app_version": "1.3.0"})]),
        ("semver_lte", "app_version", "1.2.3", [("patch below", {"app_version": "1.2.2"})]),
    ]
    cases = []
    for op, attribute, value, variants in ops:
        config = experiment(f"target-{op}-{attribute}".replace("_", "-"), targeting=[{"attribute": attribute, "op": op,
                                                                           "value": value}])  # fmt: skip
        for label, attributes in variants:
            cases.append(case(f"targeting {op} {value!r}: {label}", config, "unit-1", attributes))
    both = experiment("target-all", targeting=[{"attribute": "country", "op": "in", "value": ["US", "CA"]},
                                               {"attribute": "age", "op": "gte", "value": 18}])  # fmt: skip
    cases.append(case("targeting: every condition must hold", both, "unit-1", {"country": "US", "age": 18}))
    cases.append(case("targeting: one failing condition excludes", both, "unit-1", {"country": "US", "age": 17}))
    return cases


def order_cases() -> list[dict[str, Any]]:
    """Evaluation order: not running -> override -> targeting -> layer -> traffic -> hash."""
    targeted = [{"attribute": "country", "op": "eq", "value": "US"}]
    cases = [case(f"status {status}: not running", experiment(f"status-{status}", status=status), "unit-1")
             for status in ("draft", "paused", "stopped")]  # fmt: skip
    cases.append(case("unknown experiment", None, "unit-1"))
    paused = experiment("order-paused-override", status="paused", overrides={"qa-1": "treatment"})
    cases.append(case("not running beats an override", paused, "qa-1"))
    config = experiment("order-override", traffic=0.1, targeting=targeted, overrides={"qa-1": "treatment"})
    cases.append(case("an override beats targeting and traffic", config, "qa-1", {"country": "CA"}))
    cases.append(case("an override names a variant, not the hash", config, "qa-1", {"country": "US"}))
    layered = experiment("order-layer", layer="corpus-order", layer_share=0.3, traffic=0.5, targeting=targeted)

    def in_slice(unit: str) -> bool:
        return layer_bucket("corpus-order", unit) < 3000

    def in_half(unit: str) -> bool:
        return in_traffic("order-layer", unit, 0.5)

    excluded = first_unit("out", lambda u: not in_slice(u) and not in_half(u))
    cases.append(case("targeting is checked before the layer", layered, excluded, {"country": "CA"}))
    cases.append(case("the layer is checked before traffic", layered, excluded, {"country": "US"}))
    inside = first_unit("in", lambda u: in_slice(u) and not in_half(u))
    cases.append(case("inside the layer slice, traffic still applies", layered, inside, {"country": "US"}))
    enrolled = first_unit("in", lambda u: in_slice(u) and in_half(u))
    cases.append(case("inside the layer and the traffic: hashed", layered, enrolled, {"country": "US"}))
    return cases


def bucketing_cases() -> list[dict[str, Any]]:
    """Traffic, weights and layers on their own."""
    cases = []
    partial = experiment("traffic-quarter", traffic=0.25, salt="corpus-traffic")
    cases.append(case("traffic: enrolled", partial, first_unit("u", lambda u: in_traffic("corpus-traffic", u, 0.25))))
    cases.append(case("traffic: not enrolled", partial,
                      first_unit("u", lambda u: not in_traffic("corpus-traffic", u, 0.25))))  # fmt: skip
    three = experiment("weights-three", variants=THREE)
    config = ExperimentConfig.model_validate(three)
    for variant in ("a", "b", "c"):
        unit = first_unit("w", lambda u, v=variant: hashed_variant(config, u) == v)
        cases.append(case(f"weights 0.2/0.3/0.5: a unit hashed to {variant}", three, unit))
    zero = experiment("weights-zero", variants=[{"key": "off", "weight": 0.0}, {"key": "on", "weight": 1.0}])
    cases += [case(f"a zero-weight variant is never chosen ({n})", zero, f"z-{n}") for n in range(3)]
    shared = {"salt": "corpus-salt", "variants": TWO}
    cases.append(case("the salt, not the key, drives the hash (1)", experiment("salt-one", **shared), "unit-7"))
    cases.append(case("the salt, not the key, drives the hash (2)", experiment("salt-two", **shared), "unit-7"))
    sliced = experiment("layer-half", layer="corpus-layer", layer_share=0.5)
    cases.append(case("layer: inside the slice", sliced, first_unit("l", lambda u: layer_bucket("corpus-layer", u)
                                                                    < BUCKETS // 2)))  # fmt: skip
    cases.append(case("layer: outside the slice", sliced, first_unit("l", lambda u: layer_bucket("corpus-layer", u)
                                                                     >= BUCKETS // 2)))  # fmt: skip
    unicode_unit = experiment("unicode-units", salt="ünïcode-salt ☃")
    cases += [case(f"unicode unit {unit!r}", unicode_unit, unit) for unit in ("用户-42", "émile@example.com", "🙂")]
    return cases


def sticky_cases() -> list[dict[str, Any]]:
    """A stored assignment wins over targeting, traffic and the layer, never over an override
    or a stopped experiment; a stored variant the config does not have is ignored."""
    targeted = [{"attribute": "country", "op": "eq", "value": "US"}]
    config = experiment("sticky-targeted", targeting=targeted, traffic=0.5, salt="corpus-sticky",
                        overrides={"qa-1": "control"})  # fmt: skip
    parsed = ExperimentConfig.model_validate(config)
    enrolled = first_unit("s", lambda u: in_traffic("corpus-sticky", u, 0.5) and hashed_variant(parsed, u) == "control")
    outside = first_unit("s", lambda u: not in_traffic("corpus-sticky", u, 0.5))
    layered = experiment("sticky-layer", layer="corpus-sticky-layer", layer_share=0.2)
    excluded = first_unit("s", lambda u: layer_bucket("corpus-sticky-layer", u) >= 2000)
    return [
        case("sticky: the stored variant beats the hash", config, enrolled, {"country": "US"}, sticky="treatment"),
        case("sticky: stored equals the hash", config, enrolled, {"country": "US"}, sticky="control"),
        case("sticky: nothing stored, so the hash (and it is stored)", config, enrolled, {"country": "US"}),
        case(
            "sticky: stored beats targeting that no longer holds",
            config,
            enrolled,
            {"country": "CA"},
            sticky="treatment",
        ),
        case(
            "sticky: stored beats traffic that no longer covers the unit",
            config,
            outside,
            {"country": "US"},
            sticky="treatment",
        ),
        case("sticky: not targeted and nothing stored", config, outside, {"country": "CA"}),
        case("sticky: stored beats the layer slice", layered, excluded, sticky="treatment"),
        case("sticky: an override beats the stored variant", config, "qa-1", {"country": "US"}, sticky="treatment"),
        case(
            "sticky: not running beats the stored variant",
            experiment("sticky-paused", status="paused"),
            "unit-1",
            sticky="treatment",
        ),
        case(
            "sticky: a stored variant the config lacks is ignored",
            config,
            enrolled,
            {"country": "US"},
            sticky="retired",
        ),
    ]


def expected(entry: dict[str, Any]) -> dict[str, Any]:
    """What the SDK's local mode answers with a sticky store holding `sticky` (if any)."""
    configs = {} if entry["experiment"] is None else {
        entry["experiment"]["key"]: ExperimentConfig.model_validate(entry["experiment"])}  # fmt: skip
    key = entry["experiment"]["key"] if entry["experiment"] else "no-such-experiment"
    store = InMemoryStickyStore()
    if entry["sticky"] is not None:
        store.set_if_absent(entry["unit_id"], key, entry["sticky"])
    return decide_locally(configs, key, entry["unit_id"], entry["attributes"], store).to_dict()


def build() -> dict[str, object]:
    cases = targeting_cases() + order_cases() + bucketing_cases() + sticky_cases()
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    for entry in cases:
        entry["expected"] = expected(entry)
    return {"bucketing_version": BUCKETING_VERSION, "buckets": BUCKETS, "cases": cases}


def main() -> None:
    path = Path(__file__).with_name("evaluation.json")
    path.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
