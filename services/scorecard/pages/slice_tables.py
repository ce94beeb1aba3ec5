"""The experiment page's slice tables: one per dimension, rows = slice values (units per variant,
the slice's own SRM state), one column per metric and treatment variant with the effect, its
interval and the corrected p-value (the raw one beside it). Jinja2 escapes every string."""

from __future__ import annotations

from typing import Any

from services.scorecard.slice_words import value_label


def _srm_state(srm: dict[str, Any] | None) -> dict[str, str]:
    if srm is None:
        return {"state": "unknown", "text": "not checked"}
    if srm["mismatch"]:
        return {"state": "mismatch", "text": f"mismatch (p = {srm['p_value']:.2g})"}
    if not srm["judged"]:
        return {"state": "unjudged", "text": "too few units"}
    return {"state": "ok", "text": "ok"}


def _p_value(p_value: float | None) -> str:
    """'= 0.031', or '< 0.0001' where more digits only say 'tiny'."""
    if p_value is None:
        return "n/a"
    return "< 0.0001" if p_value < 1e-4 else f"= {p_value:.2g}"


def _effect_cell(comparison: dict[str, Any] | None, higher_is_better: bool, corrected: bool) -> dict[str, Any]:
    if comparison is None:
        return {"effect": "–", "ci": "", "p": "", "tone": "neutral", "error": ""}
    relative, interval = comparison.get("relative_effect"), comparison.get("relative_ci")
    absolute = comparison.get("absolute_effect")
    if comparison.get("p_value") is None:
        message = (comparison.get("error") or {}).get("message", "not computed")
        return {"effect": "–", "ci": "", "p": "", "tone": "neutral", "error": message}
    effect = f"{relative:+.1%}" if relative is not None else f"{absolute:+.4g}"
    ci = f"[{interval[0]:+.1%}, {interval[1]:+.1%}]" if interval and None not in interval else ""
    tone = "neutral"
    if comparison["significant"] and absolute:
        tone = "good" if (absolute > 0) == higher_is_better else "bad"
    p = f"p {_p_value(comparison['p_value'])}"
    if corrected:
        p += f" (raw {_p_value(comparison['raw_p_value'])})"
    return {"effect": effect, "ci": ci, "p": p, "tone": tone, "error": ""}


def _columns(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """(metric, variant) pairs in the order the first slice lists them."""
    columns: dict[tuple[str, str], dict[str, Any]] = {}
    for item in slices:
        for metric in item["metrics"]:
            for comparison in metric["comparisons"]:
                columns.setdefault((metric["name"], comparison["variant"]), {
                    "metric": metric["name"], "variant": comparison["variant"], "role": metric["role"],
                    "corrected": metric["corrected"], "higher_is_better": metric["higher_is_better"],
                })  # fmt: skip
    return list(columns.values())


def _row(item: dict[str, Any], columns: list[dict[str, Any]]) -> dict[str, Any]:
    by_column = {(m["name"], c["variant"]): c for m in item["metrics"] for c in m["comparisons"]}
    return {
        "value": value_label(item["value"]), "units": list(item["units"].values()), "srm": _srm_state(item["srm"]),
        "cells": [_effect_cell(by_column.get((c["metric"], c["variant"])), c["higher_is_better"], c["corrected"])
                  for c in columns],
    }  # fmt: skip


def slice_tables(card: dict[str, Any]) -> list[dict[str, Any]]:
    """One table per dimension, in the order the results list the dimensions."""
    slices = card.get("slices") or []
    checks = card.get("slice_checks") or {}
    mixes = {item["dimension"]: item for item in checks.get("mix", [])}
    simpson = [item for item in checks.get("simpson", [])]
    tables = []
    for dimension in dict.fromkeys(item["dimension"] for item in slices):
        rows_in = [item for item in slices if item["dimension"] == dimension]
        columns = _columns(rows_in)
        rows = [_row(item, columns) for item in rows_in]
        mix = mixes.get(dimension)
        flags = sum(row["srm"]["state"] == "mismatch" for row in rows) + bool(mix and mix["mismatch"])
        flags += sum(item["dimension"] == dimension for item in simpson)
        tables.append({"dimension": dimension, "variants": list(rows_in[0]["units"]), "columns": columns,
                       "rows": rows, "mix": mix, "flags": flags})  # fmt: skip
    return tables
