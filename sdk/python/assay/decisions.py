"""What evaluation answers: an `Assignment` (variant and reason) and the shared constant
answers. Apart from `assay.evaluation` so that compiled configs can return them too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Reason = Literal[
    "hash", "sticky", "override", "not_running", "not_targeted", "not_in_traffic",
    "layer_excluded", "unknown_experiment",
]  # fmt: skip
ENROLLING_REASONS = frozenset({"hash", "sticky", "override"})
# Answers whose unit enters the analysis, so the SDK logs an exposure for them. Overridden
# units are QA traffic: they get their variant but are never exposed.
EXPOSED_REASONS = frozenset({"hash", "sticky"})
# Answers that never consult the sticky store: the experiment is not assigning (or unknown),
# or QA forced a variant with an override.
STICKY_FREE_REASONS = frozenset({"not_running", "override", "unknown_experiment"})


@dataclass(frozen=True, slots=True)
class Assignment:
    """The variant a unit gets in one experiment (None: not enrolled) and why."""

    variant: str | None
    reason: Reason

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "reason": self.reason}


NOT_RUNNING = Assignment(None, "not_running")
NOT_TARGETED = Assignment(None, "not_targeted")
NOT_IN_TRAFFIC = Assignment(None, "not_in_traffic")
LAYER_EXCLUDED = Assignment(None, "layer_excluded")
UNKNOWN_EXPERIMENT = Assignment(None, "unknown_experiment")
