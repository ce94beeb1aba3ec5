"""Assignment: evaluate every requested (unit, experiment) from the cached config, then
resolve stickiness for all of them in one Redis round trip."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from assay.evaluation import (
    EXPOSED_REASONS,
    UNKNOWN_EXPERIMENT,
    Assignment,
    apply_sticky,
    consults_sticky,
    evaluate,
)

from services.assignment.sticky import RedisStickyResolver, StickyResult
from services.common.registry.cache import ConfigSnapshot


@dataclass(frozen=True, slots=True)
class UnitAnswer:
    unit_id: str
    degraded: bool
    assignments: dict[str, Assignment]
    # The `dimensions` of the requested experiments that have any (usually none): an exposed
    # answer carries them, so a remote SDK knows which attributes to attach to its exposure
    # without fetching the config. Omitted otherwise, so most answers keep their old bytes.
    dimensions: Mapping[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        assignments = {k: d.to_dict() for k, d in self.assignments.items()}
        if self.dimensions:
            for key, dimensions in self.dimensions.items():
                if self.assignments[key].reason in EXPOSED_REASONS:
                    assignments[key]["dimensions"] = dimensions
        return {"unit_id": self.unit_id, "degraded": self.degraded, "assignments": assignments}


def _sliced(snapshot: ConfigSnapshot, experiment_keys: Sequence[str]) -> dict[str, list[str]]:
    configs = snapshot.experiments
    return {k: c.dimensions for k in experiment_keys if (c := configs.get(k)) is not None and c.dimensions}


def _decide_without_store(
    snapshot: ConfigSnapshot, experiment_keys: Sequence[str], unit_id: str,
    attributes: Mapping[str, Any],
) -> dict[str, Assignment]:  # fmt: skip
    decisions: dict[str, Assignment] = {}
    for key in experiment_keys:
        config = snapshot.experiments.get(key)
        decisions[key] = UNKNOWN_EXPERIMENT if config is None else evaluate(config, unit_id, attributes)
    return decisions


def _apply_sticky(
    snapshot: ConfigSnapshot, decisions: dict[str, Assignment], lookups: list[tuple[str, str | None]],
    stored: Sequence[StickyResult | None],
) -> None:  # fmt: skip
    for (key, _candidate), result in zip(lookups, stored, strict=True):
        if result is None:
            continue  # unknown (Redis away): the fresh answer stands
        decisions[key] = apply_sticky(snapshot.experiments[key], decisions[key], result.variant, result.newly_stored)


async def assign_units(
    snapshot: ConfigSnapshot, store: RedisStickyResolver, units: Sequence[tuple[str, Mapping[str, Any]]],
    experiments: Sequence[str] | None,
) -> list[UnitAnswer]:  # fmt: skip
    experiment_keys = list(dict.fromkeys(experiments)) if experiments is not None else list(snapshot.running)
    all_decisions = [_decide_without_store(snapshot, experiment_keys, u, a) for u, a in units]
    lookups = [[(k, d.variant) for k, d in decisions.items() if consults_sticky(d)] for decisions in all_decisions]
    pending = [i for i in range(len(units)) if lookups[i]]
    degraded = [False] * len(units)
    if pending:
        stored, unknown = await store.resolve([(units[i][0], lookups[i]) for i in pending])
        for position, i in enumerate(pending):
            _apply_sticky(snapshot, all_decisions[i], lookups[i], stored[position])
            degraded[i] = unknown[position]
    sliced = _sliced(snapshot, experiment_keys)
    return [UnitAnswer(unit_id, degraded[i], all_decisions[i], sliced) for i, (unit_id, _) in enumerate(units)]
