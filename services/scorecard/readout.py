"""The readout: a scorecard rewritten for the people who act on it (docs/api.md "Readout").

Bottom line first: the decision and one plain sentence with the primary effect and its interval,
in the metric's own format; then the primary metric's path up the KPI tree, the trust checks,
guardrails, secondary metrics, caveats a person can act on, and the method. Pure: built from
the governed scorecard, the experiment and the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.common.catalog import Catalog
from services.common.registry.models import ExperimentPublic

DECISION_WORDS = {"ship": "Ship", "dont_ship": "Don't ship", "invalid": "Do not act on this result",
                  "keep_running": "Keep running", "no_effect": "No effect"}  # fmt: skip


def format_value(value: float | None, fmt: str) -> str:
    """A metric value as people read it: 12.5% / $4.10 / 320 ms / 3.42."""
    if value is None:
        return "n/a"
    if fmt == "percent":
        return f"{value:.1%}"
    if fmt == "currency":
        return f"${value:,.2f}"
    if fmt == "duration_ms":
        return f"{value:,.0f} ms"
    return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def format_change(value: float | None, fmt: str) -> str:
    """An absolute change: +1.2 pp / +$0.40 / -12 ms / +0.31."""
    if value is None:
        return "n/a"
    sign = "+" if value >= 0 else "-"
    if fmt == "percent":
        return f"{sign}{abs(value) * 100:.1f} pp"
    return sign + format_value(abs(value), fmt)


def _pct(value: float) -> str:
    return f"{abs(value):.1%}"


def _first_comparison(metric: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in metric["comparisons"] if c.get("relative_effect") is not None), None)


def effect_sentence(metric: dict[str, Any], fmt: str, level: float) -> str:
    """'raised conversion by 48.6% (95% CI 25.6% to 71.5%), from 10.1% to 15.0%'."""
    comparison = _first_comparison(metric)
    if comparison is None:
        return f"could not measure {metric['name']} yet"
    effect, (low, high) = comparison["relative_effect"], comparison["relative_ci"]
    verb = "raised" if effect >= 0 else "lowered"
    ci = f"{level:.0%} CI {'+' if low >= 0 else '-'}{_pct(low)} to {'+' if high >= 0 else '-'}{_pct(high)}"
    if (low >= 0) == (high >= 0):  # the interval keeps one sign: print it without signs, as people say it
        ci = f"{level:.0%} CI {_pct(min(abs(low), abs(high)))} to {_pct(max(abs(low), abs(high)))}"
    span = f"from {format_value(comparison['baseline_mean'], fmt)} to {format_value(comparison['variant_mean'], fmt)}"
    return f"{verb} {metric['name']} by {_pct(effect)} ({ci}), {span}"


def _guardrail_rows(card: dict[str, Any], catalog: Catalog) -> list[dict[str, Any]]:
    rows = []
    for metric in (m for m in card["metrics"] if m["role"] == "guardrail"):
        harmed = any(g["harmed"] for g in metric["guardrails"])
        # With no tolerated margin "no significant harm" is the test; with one, non-inferiority must be shown.
        safe = bool(metric["guardrails"]) and all(g["non_inferior"] or g["margin"] == 0 for g in metric["guardrails"])
        verdict = "harmed" if harmed else ("passed" if safe else "inconclusive")
        fmt = _format_of(metric["name"], catalog)
        comparison = _first_comparison(metric)
        change = format_change(comparison["absolute_effect"], fmt) if comparison else "n/a"
        rows.append({"metric": metric["name"], "verdict": verdict, "change": change,
                     "sentence": f"{metric['name']}: {verdict} ({change})"})  # fmt: skip
    return rows


def _format_of(name: str, catalog: Catalog) -> str:
    metric = catalog.get(name)
    return metric.format if metric is not None else "number"


def _secondary_rows(card: dict[str, Any], catalog: Catalog, level: float) -> list[dict[str, Any]]:
    rows = []
    for metric in (m for m in card["metrics"] if m["role"] == "secondary"):
        comparison = _first_comparison(metric)
        rows.append({"metric": metric["name"], "significant": bool(comparison and comparison["significant"]),
                     "sentence": effect_sentence(metric, _format_of(metric["name"], catalog), level)})  # fmt: skip
    return rows


def _guardrail_clause(guardrails: Sequence[dict[str, Any]]) -> str:
    harmed = [g["metric"] for g in guardrails if g["verdict"] == "harmed"]
    if harmed:
        return f"it harmed {', '.join(harmed)}"
    if not guardrails:
        return "no guardrail was set"
    if all(g["verdict"] == "passed" for g in guardrails):
        return "no guardrail was harmed"
    return "no guardrail was harmed, though some cannot yet rule out harm"


def bottom_line(card: dict[str, Any], experiment: ExperimentPublic, catalog: Catalog,
                guardrails: Sequence[dict[str, Any]]) -> str:  # fmt: skip
    verdict = card["decision"]["verdict"]
    level = 1 - experiment.analysis.alpha
    primary = next((m for m in card["metrics"] if m["role"] == "primary"), None)
    who = experiment.name
    if verdict == "invalid":
        return (
            f"{DECISION_WORDS[verdict]}: the variants did not receive the share of users they were meant to "
            "(or the logging lost data), so the numbers cannot be trusted; find the cause and restart."
        )
    if primary is None:
        return f"{DECISION_WORDS.get(verdict, verdict)}: {who} has no primary metric with results yet."
    effect = effect_sentence(primary, _format_of(primary["name"], catalog), level)
    if verdict == "keep_running":
        needed = primary.get("required_units_per_variant")
        more = f"; about {needed:,} users per variant are needed to detect the planned change" if needed else ""
        return f"Keep running: no clear answer yet; so far {who} {effect}{more}."
    if verdict == "no_effect":
        clause = _guardrail_clause(guardrails)
        return f"No effect: {who} {effect}, which is not distinguishable from no change; {clause}."
    return f"{DECISION_WORDS.get(verdict, verdict)}: {who} {effect}; {_guardrail_clause(guardrails)}."


def _trust(card: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    srm = card.get("srm")
    quality_failed = any(reason.startswith("data quality check failed") for reason in card["decision"]["reasons"])
    planned, reached = flags["planned_units_per_variant"], flags["reached_units_per_variant"]
    return {
        "srm": "not_checked" if srm is None else ("failed" if srm["mismatch"] else "passed"),
        "data_quality": "failed" if quality_failed else "passed",
        "sample_size": {
            "planned_per_variant": planned,
            "reached_per_variant": reached,
            "reached": None if planned is None else reached >= planned,
        },
        "definitions": "changed" if flags["outdated_definitions"] else "current",
        "uncertified_primary": flags["uncertified_primary"],
        "plan_changed_after_start": flags["plan_changed_after_start"],
        "early_look": flags["early_look"],
        **slice_trust(card),
    }


def slice_trust(card: dict[str, Any]) -> dict[str, Any]:
    """What the slice checks found: `slice_srm` (not_checked without slices), the metrics with a
    Simpson's-paradox warning and the dimensions whose mix differs between variants."""
    checks = card.get("slice_checks")
    if checks is None:
        return {"slice_srm": "not_checked", "simpson": [], "slice_mix": []}
    return {
        "slice_srm": "failed" if checks["srm_mismatches"] else "passed",
        "simpson": list(dict.fromkeys(item["metric"] for item in checks["simpson"])),
        "slice_mix": [item["dimension"] for item in checks["mix"] if item["mismatch"]],
    }


def _caveats(card: dict[str, Any], flags: dict[str, Any], trust: dict[str, Any]) -> list[str]:
    caveats = list(card["warnings"])  # the slice checks' sentences, then the governance ones
    if trust["srm"] == "failed":
        caveats.insert(0, "the traffic split is off (sample ratio mismatch): check the assignment and the exposure "
                          "logging, fix them, and restart the experiment")  # fmt: skip
    if trust["data_quality"] == "failed":
        caveats.append("a data-quality check failed: read the scorecard's data-quality section and fix the logging")
    if trust["sample_size"]["planned_per_variant"] is None:
        caveats.append("no planned sample size was registered: set plan.planned_units_per_variant (POST /v1/power "
                       "helps) before the next experiment")  # fmt: skip
    return caveats


def method(card: dict[str, Any], experiment: ExperimentPublic) -> str:
    analysis = experiment.analysis
    parts = [f"Welch t-tests on per-unit sufficient statistics at alpha {analysis.alpha:g}",
             "relative effects and their intervals by the delta method"]  # fmt: skip
    if analysis.cuped:
        parts.append("CUPED variance reduction with a pre-exposure covariate")
    if analysis.sequential:
        parts.append("always-valid sequential intervals (safe to look early)")
    parts.append(f"{analysis.correction} correction over primary and secondary comparisons" if analysis.correction
                 != "none" else "no multiple-testing correction")  # fmt: skip
    parts.append("guardrails tested one-sided for harm")
    frozen = experiment.frozen_plan
    plan = f"; analysis plan {frozen.hash} frozen at {frozen.frozen_at}" if frozen else ""
    return "; ".join(parts) + f"; results as of {card['as_of']}{plan}."


def build_readout(card: dict[str, Any], experiment: ExperimentPublic, catalog: Catalog) -> dict[str, Any]:
    level = 1 - experiment.analysis.alpha
    flags = card["governance"]
    guardrails = _guardrail_rows(card, catalog)
    trust = _trust(card, flags)
    primary = [m for m in card["metrics"] if m["role"] == "primary"]
    return {
        "experiment": experiment.key, "name": experiment.name, "status": experiment.status,
        "owner": experiment.owner, "as_of": card["as_of"],
        "decision": card["decision"]["verdict"],
        "bottom_line": bottom_line(card, experiment, catalog, guardrails),
        "kpi_path": catalog.path_to_root(experiment.metrics.primary[0]) if experiment.metrics.primary else [],
        "primary": [{"metric": m["name"], "sentence": effect_sentence(m, _format_of(m["name"], catalog), level)}
                    for m in primary],
        "trust": trust, "guardrails": guardrails, "secondary": _secondary_rows(card, catalog, level),
        "caveats": _caveats(card, flags, trust), "reasons": card["decision"]["reasons"],
        "method": method(card, experiment),
    }  # fmt: skip


def slice_summary(trust: dict[str, Any]) -> str:
    """'traffic split off in some slice; Simpson's paradox on conversion' or 'consistent'."""
    if trust["slice_srm"] == "not_checked":
        return "not sliced"
    parts = ["traffic split off in some slice"] if trust["slice_srm"] == "failed" else []
    parts += [f"Simpson's paradox on {', '.join(trust['simpson'])}"] if trust["simpson"] else []
    parts += [f"mix of {', '.join(trust['slice_mix'])} differs between variants"] if trust["slice_mix"] else []
    return "; ".join(parts) or "consistent"


def readout_markdown(readout: dict[str, Any]) -> str:
    """The readout for docs and chat: the bottom line first, then the same sections."""
    trust = readout["trust"]
    size = trust["sample_size"]
    lines = [f"# {readout['name']} ({readout['experiment']})", "", f"**{readout['bottom_line']}**", ""]
    if readout["kpi_path"]:
        lines += [f"KPI path: {' → '.join(readout['kpi_path'])}", ""]
    lines += ["## Can we trust it?", "",
              f"- Traffic split (SRM): {trust['srm']}", f"- Data quality: {trust['data_quality']}",
              f"- Sample size: {size['reached_per_variant']:,} per variant"
              + (f" of {size['planned_per_variant']:,} planned" if size["planned_per_variant"] else " (no plan)"),
              f"- Metric definitions: {trust['definitions']}",
              f"- Uncertified primary metrics: {', '.join(trust['uncertified_primary']) or 'none'}",
              f"- Plan changed after start: {'yes' if trust['plan_changed_after_start'] else 'no'}",
              f"- Slices: {slice_summary(trust)}", ""]  # fmt: skip
    sections = (("Guardrails", readout["guardrails"]), ("Secondary metrics", readout["secondary"]))
    for title, rows in sections:
        lines += [f"## {title}", ""] + ([f"- {row['sentence']}" for row in rows] or ["- none"]) + [""]
    lines += ["## Caveats", ""] + ([f"- {caveat}" for caveat in readout["caveats"]] or ["- none"]) + [""]
    lines += ["## Method", "", readout["method"], ""]
    return "\n".join(lines)
