"""Pure rules for changing an experiment: create, patch, lifecycle, overrides.

Each function takes the current state and returns the new document plus what changed (for
the audit log), or raises `RegistryError` with a sentence the user can act on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from services.assignment.layers import LayerFull, allocate_slice
from services.assignment.lifecycle import (
    FROZEN_WHILE_LIVE,
    HOLDS_LAYER_SLICE,
    LIVE_STATUSES,
    can_transition,
    transition_error,
)
from services.assignment.schemas import NULLABLE_ON_UPDATE, ExperimentCreate, ExperimentUpdate, StatusChange
from services.common.catalog import Catalog
from services.common.registry.errors import RegistryError, not_found
from services.common.registry.models import ExperimentPublic, FrozenPlan, MetricsPlan, PlanChange

__all__ = [
    "RegistryError",
    "build_created",
    "build_status_change",
    "build_updated",
    "check_metrics",
    "check_override_variant",
    "not_found",
]


def _taken_slices(docs: Mapping[str, ExperimentPublic], layer: str, exclude: str) -> list[tuple[int, int]]:
    return [
        doc.layer_range
        for doc in docs.values()
        if doc.layer == layer and doc.key != exclude and doc.layer_range is not None
        and doc.status in HOLDS_LAYER_SLICE
    ]  # fmt: skip


def _slice_for(
    docs: Mapping[str, ExperimentPublic], key: str, layer: str | None, share: float | None
) -> tuple[int, int] | None:
    if layer is None:
        return None
    try:
        return allocate_slice(layer, _taken_slices(docs, layer, key), share)
    except LayerFull as exc:
        raise RegistryError(409, str(exc)) from exc


def check_metrics(metrics: MetricsPlan, catalog: Catalog) -> None:
    """Every metric an experiment names must be in the catalog and not deprecated (422 otherwise)."""
    roles = {"primary": metrics.primary, "secondary": metrics.secondary, "guardrail": metrics.guardrails}
    problems = catalog.unusable(roles)
    if problems:
        raise RegistryError(422, "; ".join(problems))


def build_created(body: ExperimentCreate, docs: Mapping[str, ExperimentPublic], now: str) -> ExperimentPublic:
    if body.key in docs:
        raise RegistryError(409, f"experiment '{body.key}' already exists; choose another key")
    fields = body.model_dump()
    fields["salt"] = body.salt or body.key
    return ExperimentPublic(
        **fields, status="draft", version=1, created_at=now, updated_at=now,
        layer_range=_slice_for(docs, body.key, body.layer, body.layer_share),
    )  # fmt: skip


def _requested_fields(body: ExperimentUpdate, current: ExperimentPublic) -> dict[str, Any]:
    requested = body.model_dump(include=body.model_fields_set - {"version", "reason"})
    for name, value in requested.items():
        if value is None and name not in NULLABLE_ON_UPDATE:
            raise RegistryError(422, f"'{name}' cannot be null; leave it out to keep the current value")
    if "salt" in requested and requested["salt"] is None:
        requested["salt"] = current.key
    return requested


def _normalised(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {"from": _normalised(old.get(name)), "to": _normalised(new.get(name))}
        for name in new
        if _normalised(old.get(name)) != _normalised(new.get(name))
    }


def build_updated(
    current: ExperimentPublic, body: ExperimentUpdate, docs: Mapping[str, ExperimentPublic], now: str
) -> tuple[ExperimentPublic, dict[str, Any]]:
    if body.version is not None and body.version != current.version:
        raise RegistryError(
            409, f"version mismatch: you sent {body.version} but '{current.key}' is at version "
            f"{current.version}; reload it and apply your change again",
        )  # fmt: skip
    if current.status == "archived":
        raise RegistryError(409, f"experiment '{current.key}' is archived and read-only")
    before = current.model_dump()
    changes = diff(before, _requested_fields(body, current))
    frozen = [name for name in FROZEN_WHILE_LIVE if name in changes]
    if frozen and current.status in LIVE_STATUSES:
        raise RegistryError(
            409, f"cannot change {', '.join(frozen)} of '{current.key}' while it is {current.status}: "
            "it would move enrolled units to other variants; stop it and start a new experiment",
        )  # fmt: skip
    if not changes:
        return current, {}
    after = {**before, **{name: change["to"] for name, change in changes.items()}}
    replanned = _plan_fields_changed(current, after)
    if replanned and current.status in LIVE_STATUSES:
        if not body.reason.strip():
            raise RegistryError(
                422, f"changing {' and '.join(replanned)} of '{current.key}' while it is {current.status} needs a "
                "'reason' in the request body; the change is flagged on the readout (the result becomes exploratory)",
            )  # fmt: skip
        after["plan_changes"] = [*before["plan_changes"], PlanChange(at=now, fields=replanned, reason=body.reason)]
    if "layer" in changes or "layer_share" in changes:
        after["layer_range"] = _slice_for(docs, current.key, after["layer"], after["layer_share"])
    after.update(version=current.version + 1, updated_at=now)
    return ExperimentPublic.model_validate(after), changes


def _plan_fields_changed(current: ExperimentPublic, after: Mapping[str, Any]) -> list[str]:
    """Which pre-registered choices a change touches: the primary metrics, alpha."""
    changed = []
    if list(after["metrics"]["primary"]) != list(current.metrics.primary):
        changed.append("the primary metrics")
    if after["analysis"]["alpha"] != current.analysis.alpha:
        changed.append("alpha")
    return changed


def freeze_plan(doc: ExperimentPublic, now: str) -> FrozenPlan:
    """The analysis plan at the start, with a hash over what it commits to."""
    plan = {
        "primary": list(doc.metrics.primary), "alpha": doc.analysis.alpha, "sequential": doc.analysis.sequential,
        "minimum_detectable_effect": doc.plan.minimum_detectable_effect or doc.analysis.minimum_detectable_effect,
        "planned_units_per_variant": doc.plan.planned_units_per_variant,
        "planned_end": doc.plan.planned_end.isoformat().replace("+00:00", "Z") if doc.plan.planned_end else None,
    }  # fmt: skip
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    return FrozenPlan(frozen_at=now, hash=digest, **plan)


def build_status_change(
    current: ExperimentPublic, change: StatusChange, now: str
) -> tuple[ExperimentPublic, dict[str, Any]]:
    if change.status == current.status:
        raise RegistryError(409, f"experiment '{current.key}' is already {current.status}")
    if not can_transition(current.status, change.status):
        raise RegistryError(409, transition_error(current.status, change.status))
    updates: dict[str, Any] = {"status": change.status, "version": current.version + 1, "updated_at": now}
    if change.status not in HOLDS_LAYER_SLICE:
        updates["layer_range"] = None
    changes: dict[str, Any] = {"status": {"from": current.status, "to": change.status}}
    if current.status == "draft" and change.status == "running":
        frozen = freeze_plan(current, now)
        updates["frozen_plan"] = frozen
        changes["plan_frozen"] = frozen.model_dump(mode="json")
    return current.model_copy(update=updates), changes


def check_override_variant(current: ExperimentPublic, variant: str) -> None:
    keys = [v.key for v in current.variants]
    if variant not in keys:
        raise RegistryError(
            422, f"unknown variant '{variant}' for experiment '{current.key}'; use one of {', '.join(keys)}"
        )
    if current.status == "archived":
        raise RegistryError(409, f"experiment '{current.key}' is archived and read-only")
