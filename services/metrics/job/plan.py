"""What a pass plans and produces: each experiment's plan (its metrics and timeline) and
the pass's outcome (computations, modes, what a state directory keeps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.common.catalog import MetricDefinition
from services.metrics.job import state as st
from services.metrics.job import transforms as tf
from services.metrics.job.incremental import KeptExperiment
from services.metrics.job.run import Computation
from services.metrics.job.timeline import DAY_US, Timeline


@dataclass(frozen=True)
class ExperimentPlan:
    """What one experiment contributes to the pass: its metrics and its own timeline."""

    key: str
    metrics: tuple[MetricDefinition, ...]
    timeline: Timeline
    start_us: int  # the experiment's first exposure
    dimensions: tuple[str, ...] = ()

    @property
    def since_us(self) -> int:
        """The earliest event time its metrics can use (the CUPED lookback before day 0)."""
        return self.timeline.day0_us - self.lookback_days * DAY_US

    @property
    def lookback_days(self) -> int:
        return max((tf.covariate_lookback_days(metric) for metric in self.metrics), default=0)

    @property
    def quantile_metrics(self) -> tuple[MetricDefinition, ...]:
        return tuple(metric for metric in self.metrics if metric.type == "quantile")

    @property
    def event_names(self) -> set[str]:
        return set().union(*(metric.event_names for metric in self.metrics))


@dataclass
class Pass:
    """The outcome of one pass: a computation per experiment and the lake files it read,
    plus what a state directory keeps of it."""

    results: dict[str, Computation]
    files: list[Path]
    kept: dict[str, KeptExperiment] = field(default_factory=dict)
    experiments: dict[str, st.ExperimentState] = field(default_factory=dict)
    manifest: st.Manifest = field(default_factory=dict)
    modes: dict[str, st.Mode] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    conflicts: bool = False  # copies of an event disagree: no state is kept (see `rerun.pass_statistics`)

    def all_full(self, reason: str) -> None:
        """Every incremental experiment of the pass computed in full instead, for `reason`."""
        for key, mode in self.modes.items():
            if mode == "incremental":
                self.modes[key], self.reasons[key] = "full", reason
