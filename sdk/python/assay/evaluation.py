"""Pure evaluation: experiment config + unit -> (variant, reason). No I/O.

Order: not running -> override -> targeting -> layer slice -> traffic -> hash. Sticky
storage (which wins over targeting and traffic once a unit is enrolled) wraps this in the
assignment service and in the SDK's local mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from assay.bucketing import choose_variant_index, layer_bucket, variant_bucket
from assay.models import ExperimentConfig

Reason = Literal[
    "hash", "sticky", "override", "not_running", "not_targeted", "not_in_traffic",
    "layer_excluded", "unknown_experiment",
]  # fmt: skip
ENROLLING_REASONS = frozenset({"hash", "sticky", "override"})


@dataclass(frozen=True, slots=True)
class Decision:
    variant: str | None
    reason: Reason

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "reason": self.reason}


NOT_RUNNING = Decision(None, "not_running")
NOT_TARGETED = Decision(None, "not_targeted")
NOT_IN_TRAFFIC = Decision(None, "not_in_traffic")
LAYER_EXCLUDED = Decision(None, "layer_excluded")
UNKNOWN_EXPERIMENT = Decision(None, "unknown_experiment")


def hashed_variant(config: ExperimentConfig, unit_id: str) -> str:
    """The variant the hash gives, ignoring eligibility (weights only)."""
    weights = [v.weight for v in config.variants]
    return config.variants[choose_variant_index(variant_bucket(config.salt, unit_id), weights)].key


def in_layer_slice(config: ExperimentConfig, unit_id: str) -> bool:
    if config.layer is None:
        return True
    if config.layer_range is None:
        return False
    start, end = config.layer_range
    return start <= layer_bucket(config.layer, unit_id) < end


def evaluate(config: ExperimentConfig, unit_id: str, attributes: Mapping[str, Any] | None = None) -> Decision:
    """Decide without any stored state; `reason` is `hash` when the unit is enrolled."""
    compiled = config.compiled
    if not compiled.running:
        return NOT_RUNNING
    override = compiled.overrides.get(unit_id)
    if override is not None:
        return Decision(override, "override")
    if compiled.predicates and not compiled.eligible(attributes or {}):
        return NOT_TARGETED
    if not compiled.in_layer(unit_id):
        return LAYER_EXCLUDED
    if not compiled.in_traffic(unit_id):
        return NOT_IN_TRAFFIC
    return Decision(compiled.variant(unit_id), "hash")
