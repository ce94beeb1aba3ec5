"""What `run --all-running` computes: the running experiments, read through the shared
registry reader (`services.common.registry`), as job specs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from services.common.registry.models import ExperimentPublic
from services.common.registry.reader import read_experiments, read_running_experiments, running_documents
from services.metrics.job.run import ExperimentSpec

METRIC_ROLES = ("primary", "secondary", "guardrails")
log = logging.getLogger("services.metrics.job")


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


def registered_specs(redis_url: str, keys: Sequence[str], timeout_ms: int = 2000) -> dict[str, ExperimentSpec]:
    """Specs of these experiments as the registry defines them, whatever their status; {} (with
    a log line) when the registry does not answer, so a run with explicit flags needs no Redis."""
    try:
        documents = read_experiments(redis_url, keys, timeout_ms)
    except Exception as exc:  # redis errors: connection refused, timeout, auth
        log.info("registry not reachable; computing with the command's flags only", extra={"error": repr(exc)})
        return {}
    return {key: spec_from_experiment(doc) for key, doc in documents.items()}
