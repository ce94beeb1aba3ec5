"""Experiment lifecycle: draft -> running <-> paused -> stopped -> archived; draft -> archived."""

from __future__ import annotations

from assay.models import Status

TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"running", "archived"}),
    "running": frozenset({"paused", "stopped"}),
    "paused": frozenset({"running", "stopped"}),
    "stopped": frozenset({"archived"}),
    "archived": frozenset(),
}
# Changing these while units are being assigned would move units between variants.
FROZEN_WHILE_LIVE = ("variants", "salt", "layer", "layer_share")
LIVE_STATUSES = frozenset({"running", "paused"})
# Statuses whose layer slice is still reserved.
HOLDS_LAYER_SLICE = frozenset({"draft", "running", "paused"})


def can_transition(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


def transition_error(current: Status, target: Status) -> str:
    allowed = sorted(TRANSITIONS[current])
    options = ", ".join(allowed) if allowed else "nothing (it is final)"
    return f"cannot move an experiment from '{current}' to '{target}'; from '{current}' it can go to {options}"
