"""Multiple-comparison corrections of p-values.

The family is every (metric, treatment variant) pair among primary and secondary metrics;
guardrails are tested separately (see `guardrails.py`). Only p-values are adjusted: Holm
and Benjamini-Hochberg have no simple simultaneous intervals, so confidence intervals stay
marginal and `significant` follows the adjusted p-value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import StrEnum

from services.scorecard.stats.results import Comparison


class Correction(StrEnum):
    NONE = "none"
    HOLM = "holm"
    BH = "bh"


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm (1979) step-down adjusted p-values, controlling the family-wise error rate.

    Sorted ascending p_(1..m): adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda index: p_values[index])
    adjusted = [0.0] * m
    running_max = 0.0
    for rank, index in enumerate(order):
        running_max = max(running_max, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running_max
    return adjusted


def benjamini_hochberg_adjust(p_values: Sequence[float]) -> list[float]:
    """Benjamini & Hochberg (1995) step-up adjusted p-values, controlling the FDR.

    Sorted ascending p_(1..m): adj_(i) = min_{j >= i} min(1, m p_(j) / j).
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda index: p_values[index], reverse=True)
    adjusted = [0.0] * m
    running_min = 1.0
    for position, index in enumerate(order):
        rank = m - position
        running_min = min(running_min, m * p_values[index] / rank)
        adjusted[index] = running_min
    return adjusted


def adjust_p_values(p_values: Sequence[float], correction: Correction) -> list[float]:
    if correction is Correction.HOLM:
        return holm_adjust(p_values)
    if correction is Correction.BH:
        return benjamini_hochberg_adjust(p_values)
    return [float(p) for p in p_values]


def correct_comparisons(comparisons: Sequence[Comparison], correction: Correction, alpha: float) -> list[Comparison]:
    """Replace each p-value by its adjusted value within the family and re-judge significance.

    Comparisons without a p-value (errors) are not part of the family and pass unchanged.
    """
    tested = [index for index, item in enumerate(comparisons) if item.p_value is not None]
    raw = [comparisons[index].p_value for index in tested]
    adjusted = adjust_p_values([p for p in raw if p is not None], correction)
    corrected = list(comparisons)
    for index, p_value in zip(tested, adjusted, strict=True):
        corrected[index] = replace(comparisons[index], p_value=p_value, significant=p_value < alpha)
    return corrected
