"""What `run --all-running` computes: the running experiments, read through the shared
registry reader (`services.common.registry`), as job specs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.common.registry.models import ExperimentPublic
from services.common.registry.reader import read_running_experiments, running_documents
from services.metrics.job.run import ExperimentSpec

METRIC_ROLES = ("primary", "secondary", "guardrails")


def spec_from_experiment(doc: ExperimentPublic) -> ExperimentSpec:
    """An experiment document -> what to compute: its variants in order, its metrics (all
    catalog metrics when it names none) and its dimensions."""
    named = [name for role in METRIC_ROLES for name in getattr(doc.metrics, role)]
    variants = tuple(variant.key for variant in doc.variants)
    metrics = tuple(dict.fromkeys(named)) or None
    return ExperimentSpec(key=doc.key, variants=variants, metrics=metrics, dimensions=tuple(doc.dimensions))


def spec_from_document(raw: str | bytes) -> ExperimentSpec:
    """A stored registry document (JSON) -> its spec."""
    return spec_from_experiment(ExperimentPublic.model_validate_json(raw))


def running_specs(documents: Mapping[Any, Any]) -> list[ExperimentSpec]:
    """Specs of the running experiments among registry documents; unreadable ones are skipped."""
    return [spec_from_experiment(doc) for doc in running_documents(documents)]


def running_experiments(redis_url: str, timeout_ms: int = 2000) -> list[ExperimentSpec]:
    return [spec_from_experiment(doc) for doc in read_running_experiments(redis_url, timeout_ms)]
