"""Pure evaluation: experiment config + unit -> (variant, reason). No I/O.

Order: not running -> override -> targeting -> layer slice -> traffic -> hash. Sticky
storage (which wins over targeting and traffic once a unit is enrolled) wraps this in the
assignment service and in the SDK's local mode; both apply it with `apply_sticky`, so the
precedence override > stored assignment > fresh evaluation is written once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from assay.bucketing import choose_variant_index, layer_bucket, variant_bucket
from assay.decisions import (
    ENROLLING_REASONS,
    EXPOSED_REASONS,
    LAYER_EXCLUDED,
    NOT_IN_TRAFFIC,
    NOT_RUNNING,
    NOT_TARGETED,
    STICKY_FREE_REASONS,
    UNKNOWN_EXPERIMENT,
    Assignment,
    Reason,
)
from assay.models import ExperimentConfig

__all__ = ["ENROLLING_REASONS", "EXPOSED_REASONS", "LAYER_EXCLUDED", "NOT_IN_TRAFFIC", "NOT_RUNNING", "NOT_TARGETED",
           "STICKY_FREE_REASONS", "UNKNOWN_EXPERIMENT", "Assignment", "Reason", "apply_sticky",
           "consults_sticky", "evaluate", "hashed_variant", "in_layer_slice"]  # fmt: skip

EMPTY: Mapping[str, Any] = MappingProxyType({})


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


def evaluate(config: ExperimentConfig, unit_id: str, attributes: Mapping[str, Any] | None = None) -> Assignment:
    """Decide without any stored state; `reason` is `hash` when the unit is enrolled."""
    # The steps above, compiled once per config (`assay.compiled.compile_decide`). Read into a
    # local first: calling a slot attribute as a method is the slower path.
    decide = config.compiled.decide
    return decide(unit_id, attributes or EMPTY)


def consults_sticky(fresh: Assignment) -> bool:
    """Whether a stored assignment may change this fresh answer (so is worth looking up)."""
    return fresh.reason not in STICKY_FREE_REASONS


def apply_sticky(
    config: ExperimentConfig, fresh: Assignment, stored: str | None, newly_stored: bool = False
) -> Assignment:
    """Precedence: override > stored sticky assignment > fresh evaluation.

    `fresh` is `evaluate`'s answer; `stored` the variant the sticky store holds for the unit
    (None: nothing stored, or the store is unreachable), and `newly_stored` whether this very
    lookup stored it (then it is the unit's first assignment: reason `hash`). A stored variant
    wins over targeting and traffic, so later config changes never move an enrolled unit; one
    the config no longer has is ignored.
    """
    if not consults_sticky(fresh) or stored is None or stored not in config.compiled.variant_keys:
        return fresh
    return Assignment(stored, "hash" if newly_stored else "sticky")
