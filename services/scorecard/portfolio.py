"""The portfolio: every experiment by status and decision, per KPI-tree node the experiments that
targeted it and the measured effects of those that shipped, trust flags across the portfolio,
and what changed since a date. Pure: built from readouts the router computes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.common.catalog import Catalog
from services.common.registry.models import ExperimentPublic

FLAGS = ("srm_failures", "slice_warnings", "underpowered", "running_past_plan", "uncertified_primary",
         "plan_changed_after_start")  # fmt: skip
FLAG_TITLES = {
    "srm_failures": "Traffic split off (results invalid)",
    "slice_warnings": "Slices disagree with the overall result or lose units",
    "underpowered": "Too few users to decide yet",
    "running_past_plan": "Running past the plan", "uncertified_primary": "Primary metric not certified",
    "plan_changed_after_start": "Primary metric or alpha changed after start",
}  # fmt: skip


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _flags(experiment: ExperimentPublic, readout: dict[str, Any] | None, now: datetime) -> list[str]:
    flags = []
    if readout is not None:
        trust = readout["trust"]
        if trust["srm"] == "failed":
            flags.append("srm_failures")
        if trust["slice_srm"] == "failed" or trust["simpson"] or trust["slice_mix"]:
            flags.append("slice_warnings")
        if readout["decision"] == "keep_running":
            flags.append("underpowered")
        reached = trust["sample_size"]["reached"]
        if trust["uncertified_primary"]:
            flags.append("uncertified_primary")
    else:
        reached = None
    planned_end = experiment.plan.planned_end
    past_end = planned_end is not None and planned_end < now
    if experiment.status == "running" and (past_end or reached):
        flags.append("running_past_plan")
    if experiment.plan_changes:
        flags.append("plan_changed_after_start")
    return flags


def _row(experiment: ExperimentPublic, readout: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    changed = experiment.updated_at
    if readout is not None and readout["as_of"] > changed:
        changed = readout["as_of"]
    return {
        "key": experiment.key, "name": experiment.name, "owner": experiment.owner, "status": experiment.status,
        "primary": list(experiment.metrics.primary),
        "decision": readout["decision"] if readout else None,
        "bottom_line": readout["bottom_line"] if readout else None,
        "kpi_path": readout["kpi_path"] if readout else [],
        "flags": _flags(experiment, readout, now), "last_change": changed,
    }  # fmt: skip


def _shipped_effect(readout: dict[str, Any]) -> dict[str, Any] | None:
    if readout["decision"] != "ship" or not readout["primary"]:
        return None
    first = readout["primary"][0]
    return {"experiment": readout["experiment"], "metric": first["metric"], "sentence": first["sentence"]}


def _kpi_nodes(catalog: Catalog, rows: Sequence[dict[str, Any]], readouts: dict[str, dict[str, Any]]) -> list[Any]:
    nodes = []
    for metric in catalog.metrics:
        targeted = [row for row in rows if metric.name in row["primary"]]
        if not targeted:
            continue
        shipped = [effect for row in targeted if row["key"] in readouts
                   if (effect := _shipped_effect(readouts[row["key"]])) is not None]  # fmt: skip
        nodes.append({
            "metric": metric.name, "owner": metric.owner, "status": metric.status, "north_star": metric.north_star,
            "kpi_path": catalog.path_to_root(metric.name),
            "experiments": [{"key": r["key"], "name": r["name"], "status": r["status"], "decision": r["decision"]}
                            for r in targeted],
            "shipped_effects": shipped,
        })  # fmt: skip
    return nodes


def build_portfolio(
    experiments: Sequence[ExperimentPublic], readouts: dict[str, dict[str, Any]], catalog: Catalog,
    now: datetime, since: datetime | None = None,
) -> dict[str, Any]:  # fmt: skip
    rows = [_row(experiment, readouts.get(experiment.key), now) for experiment in experiments]
    rows.sort(key=lambda row: row["last_change"], reverse=True)
    changed = [row for row in rows if since is not None and _instant(row["last_change"]) >= since]
    return {
        "generated_at": now.isoformat().replace("+00:00", "Z"),
        "since": since.isoformat().replace("+00:00", "Z") if since else None,
        "by_status": dict(Counter(row["status"] for row in rows)),
        "by_decision": dict(Counter(row["decision"] or "no_results" for row in rows)),
        "experiments": rows,
        "kpi_nodes": _kpi_nodes(catalog, rows, readouts),
        "trust": {flag: [row["key"] for row in rows if flag in row["flags"]] for flag in FLAGS},
        "changed_since": [{"key": r["key"], "name": r["name"], "status": r["status"], "decision": r["decision"],
                           "last_change": r["last_change"]} for r in changed],
    }  # fmt: skip


def portfolio_markdown(portfolio: dict[str, Any]) -> str:
    counts = ", ".join(f"{count} {status}" for status, count in portfolio["by_status"].items()) or "none"
    decisions = ", ".join(f"{count} {d.replace('_', ' ')}" for d, count in portfolio["by_decision"].items())
    lines = ["# Experiment portfolio", "", f"**{len(portfolio['experiments'])} experiments: {counts}. "
             f"Decisions: {decisions or 'none'}.**", ""]  # fmt: skip
    if portfolio["since"]:
        lines += [f"## Changed since {portfolio['since']}", ""]
        lines += [f"- {c['name']} ({c['key']}): {c['status']}, {c['decision'] or 'no results'}"
                  for c in portfolio["changed_since"]] or ["- nothing"]  # fmt: skip
        lines.append("")
    lines += ["## Experiments", "", "| experiment | status | decision | bottom line |", "|---|---|---|---|"]
    for row in portfolio["experiments"]:
        bottom = (row["bottom_line"] or "no results yet").replace("|", "\\|")
        name = row["name"].replace("|", "\\|")
        lines.append(f"| {name} ({row['key']}) | {row['status']} | "
                     f"{row['decision'] or '–'} | {bottom} |")  # fmt: skip
    lines += ["", "## KPI tree nodes", ""]
    for node in portfolio["kpi_nodes"]:
        lines.append(f"- **{node['metric']}** ({' → '.join(node['kpi_path'])}): {len(node['experiments'])} experiments")
        lines += [f"  - shipped: {effect['experiment']} {effect['sentence']}" for effect in node["shipped_effects"]]
    lines += ["", "## Trust flags", ""]
    for flag, keys in portfolio["trust"].items():
        lines.append(f"- {FLAG_TITLES[flag]}: {', '.join(keys) or 'none'}")
    return "\n".join(lines) + "\n"
