"""What the catalog and the frozen plan say about an experiment's results: definitions changed
since the results were computed, draft (uncertified) primary metrics, the plan changed after the
start, a look before the planned sample size without sequential testing. Pure functions; the
scorecard, the readout and the portfolio all flag the same things."""

from __future__ import annotations

from typing import Any

from services.common.catalog import Catalog
from services.common.registry.models import ExperimentPublic
from services.common.results import ResultsDocument


def outdated_definitions(results: ResultsDocument, catalog: Catalog) -> list[dict[str, str]]:
    """Metrics whose results were computed under another definition than the catalog's current one."""
    outdated = []
    for metric in results.metrics:
        current = catalog.get(metric.name)
        if current is not None and current.definition_hash != metric.definition_hash:
            outdated.append({"metric": metric.name, "computed_with": metric.definition_hash,
                             "current": current.definition_hash})  # fmt: skip
    return outdated


def planned_units(experiment: ExperimentPublic) -> int | None:
    if experiment.frozen_plan is not None and experiment.frozen_plan.planned_units_per_variant is not None:
        return experiment.frozen_plan.planned_units_per_variant
    return experiment.plan.planned_units_per_variant


def reached_units(results: ResultsDocument, experiment: ExperimentPublic) -> int:
    """The smallest number of units any variant has: what a plan per variant is measured against."""
    units = [results.variants[v.key].units if v.key in results.variants else 0 for v in experiment.variants]
    return min(units, default=0)


def governance(results: ResultsDocument, experiment: ExperimentPublic, catalog: Catalog) -> dict[str, Any]:
    """The flags and a sentence a person can act on for each."""
    outdated = outdated_definitions(results, catalog)
    uncertified = catalog.uncertified(experiment.metrics.primary)
    planned, reached = planned_units(experiment), reached_units(results, experiment)
    early = (planned is not None and reached < planned and not experiment.analysis.sequential
             and experiment.status in ("running", "paused"))  # fmt: skip
    warnings = []
    for item in outdated:
        warnings.append(
            f"{item['metric']} was computed under an older definition ({item['computed_with']}; the catalog now "
            f"has {item['current']}): wait for the next metrics run before deciding on it"
        )
    for name in uncertified:
        warnings.append(f"primary metric {name} is a draft nobody has certified: ask its owner to review it "
                        "before acting on this result")  # fmt: skip
    for change in experiment.plan_changes:
        warnings.append(f"{' and '.join(change.fields)} changed after the start ({change.at[:10]}: "
                        f"{change.reason}): treat the result as exploratory")  # fmt: skip
    if early:
        warnings.append(f"only {reached:,} of the planned {planned:,} units per variant so far, without sequential "
                        "testing: an early look overstates significance; wait for the planned sample")  # fmt: skip
    return {
        "outdated_definitions": outdated,
        "uncertified_primary": uncertified,
        "plan_changed_after_start": bool(experiment.plan_changes),
        "planned_units_per_variant": planned,
        "reached_units_per_variant": reached,
        "early_look": early,
        "warnings": warnings,
    }
