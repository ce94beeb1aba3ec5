"""Checks across the slices of a dimension (units grouped by one attribute at first exposure).

- `slice_mix_test`: is the mix of slice values the same in every variant? A Pearson chi-square
  test of independence of variant x slice value on unit counts. Randomisation makes the two
  independent, so a small p-value means some slice's units are lost or misassigned in one
  variant, and the overall comparison mixes unlike populations.
- `opposite_sign_share`: the share of units in slices whose effect has the opposite sign of
  the overall effect. When most units sit in such slices the overall number is a Simpson's
  paradox (Simpson 1951): it reflects the mix of slices more than the effect within them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from services.scorecard.stats.errors import finite_or_none
from services.scorecard.stats.srm import DEFAULT_SRM_MIN_UNITS


@dataclass(frozen=True)
class SliceMixResult:
    """The independence test of one dimension; `shares[variant][value]` is the share of the
    variant's units in that slice value (only values and variants with units take part)."""

    chi2: float
    p_value: float
    dof: int
    mismatch: bool
    threshold: float
    shares: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, object]:
        return {"chi2": finite_or_none(self.chi2), "p_value": finite_or_none(self.p_value), "dof": self.dof,
                "mismatch": self.mismatch, "threshold": self.threshold}  # fmt: skip


def slice_mix_test(
    counts: Mapping[str, Mapping[str, int]], threshold: float, min_units: int = DEFAULT_SRM_MIN_UNITS
) -> SliceMixResult | None:
    """Pearson chi-square test of independence on the variant x slice-value table of unit counts
    (scipy.stats.chi2_contingency without Yates' continuity correction, as the SRM test uses the
    plain Pearson statistic too). `counts[variant][value]`. Variants and values without any units
    are left out (they carry no information and would make an expected count 0). None when fewer
    than two of either remain, or fewer than `min_units` units in all: nothing to judge."""
    variants = [variant for variant, row in counts.items() if sum(row.values()) > 0]
    values = list(dict.fromkeys(value for variant in variants for value, n in counts[variant].items() if n > 0))
    table = np.array([[counts[variant].get(value, 0) for value in values] for variant in variants], dtype=float)
    if len(variants) < 2 or len(values) < 2 or table.sum() < min_units:
        return None
    result = scipy_stats.chi2_contingency(table, correction=False)
    p_value = float(result.pvalue)
    shares = {variant: {value: float(n / row.sum()) for value, n in zip(values, row, strict=True)}
              for variant, row in zip(variants, table, strict=True)}  # fmt: skip
    return SliceMixResult(float(result.statistic), p_value, int(result.dof), p_value < threshold, threshold, shares)


def sign(value: float) -> int:
    return (value > 0) - (value < 0)


@dataclass(frozen=True)
class SliceEffect:
    """One slice's effect on a metric for one variant: None when it could not be computed."""

    value: str
    effect: float | None
    units: int


@dataclass(frozen=True)
class SignDisagreement:
    """Slices whose effect points the other way than the overall effect, and their share of units."""

    overall_sign: int
    share: float
    values: tuple[str, ...]


def opposite_sign_share(overall_effect: float, slices: Sequence[SliceEffect]) -> SignDisagreement | None:
    """The slices of one dimension whose effect has the opposite sign of `overall_effect`, with
    their share of all the dimension's units. Slices whose effect could not be computed count in
    the denominator (they hold units) but never as disagreeing. None when the overall effect is
    exactly 0 (it has no sign) or the dimension holds no units."""
    overall = sign(overall_effect)
    total = sum(item.units for item in slices)
    if overall == 0 or total == 0:
        return None
    against = [item for item in slices if item.effect is not None and sign(item.effect) == -overall]
    return SignDisagreement(overall, sum(item.units for item in against) / total, tuple(i.value for i in against))
