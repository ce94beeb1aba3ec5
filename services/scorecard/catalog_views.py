"""The governed catalog as people read it: one metric with its versions and the experiments that
use it, and the KPI tree from each North Star down. Pure functions over the catalog and the
registry's documents; the routers add the I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.common.catalog import Catalog, MetricDefinition
from services.common.definitions import DefinitionVersion
from services.common.registry.models import ExperimentPublic

ROLES = ("primary", "secondary", "guardrail")
# Experiments whose status still matters on a tree node, in the order people scan them.
STATUS_ORDER = ("running", "paused", "draft", "stopped", "archived")


def metric_public(metric: MetricDefinition) -> dict[str, Any]:
    """What the catalog says about a metric: governance, format and the definition with its hash."""
    return {
        "name": metric.name, "type": metric.type, "description": metric.description,
        "status": metric.status, "owner": metric.owner, "contact": metric.contact, "tags": list(metric.tags),
        "format": metric.format, "parent": metric.parent, "north_star": metric.north_star,
        "higher_is_better": metric.higher_is_better,
        "definition": metric.definition(), "definition_hash": metric.definition_hash,
    }  # fmt: skip


def roles_of(experiment: ExperimentPublic, metric: str) -> list[str]:
    plan = experiment.metrics
    named = {"primary": plan.primary, "secondary": plan.secondary, "guardrail": plan.guardrails}
    return [role for role in ROLES if metric in named[role]]


def experiment_ref(experiment: ExperimentPublic) -> dict[str, Any]:
    return {"key": experiment.key, "name": experiment.name, "status": experiment.status, "owner": experiment.owner}


def experiments_by_role(metric: str, experiments: Sequence[ExperimentPublic]) -> dict[str, list[dict[str, Any]]]:
    used: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLES}
    for experiment in experiments:
        for role in roles_of(experiment, metric):
            used[role].append(experiment_ref(experiment))
    return used


def metric_detail(
    metric: MetricDefinition, catalog: Catalog, versions: Sequence[DefinitionVersion],
    experiments: Sequence[ExperimentPublic],
) -> dict[str, Any]:  # fmt: skip
    """`GET /v1/metrics/{name}`: the current definition, earlier ones, and who uses it."""
    current = metric.definition_hash
    return {
        **metric_public(metric),
        "kpi_path": catalog.path_to_root(metric.name),
        "children": [child.name for child in catalog.children(metric.name)],
        "versions": [{**version.model_dump(), "current": version.definition_hash == current} for version in versions],
        "experiments": experiments_by_role(metric.name, experiments),
    }


def _by_status(metric: str, experiments: Sequence[ExperimentPublic]) -> dict[str, list[dict[str, Any]]]:
    """Experiments whose primary or secondary metrics include this one, grouped by status."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for experiment in experiments:
        roles = [role for role in roles_of(experiment, metric) if role != "guardrail"]
        if roles:
            grouped.setdefault(experiment.status, []).append({**experiment_ref(experiment), "role": roles[0]})
    return {status: grouped[status] for status in STATUS_ORDER if status in grouped}


def _node(metric: MetricDefinition, catalog: Catalog, experiments: Sequence[ExperimentPublic]) -> dict[str, Any]:
    return {
        "name": metric.name, "description": metric.description, "owner": metric.owner, "contact": metric.contact,
        "status": metric.status, "format": metric.format, "north_star": metric.north_star,
        "experiments": _by_status(metric.name, experiments),
        "children": [_node(child, catalog, experiments) for child in catalog.children(metric.name)],
    }  # fmt: skip


def kpi_tree(catalog: Catalog, experiments: Sequence[ExperimentPublic]) -> dict[str, Any]:
    """`GET /v1/kpi-tree`: each North Star with its tree; metrics outside every tree listed apart."""
    in_tree = {name for root in catalog.north_stars() for name in _names(_node(root, catalog, []))}
    outside = [metric for metric in catalog.metrics if metric.name not in in_tree and metric.parent is None]
    return {
        "trees": [_node(root, catalog, experiments) for root in catalog.north_stars()],
        "outside": [_node(metric, catalog, experiments) for metric in outside],
    }


def _names(node: dict[str, Any]) -> list[str]:
    return [node["name"], *(name for child in node["children"] for name in _names(child))]
