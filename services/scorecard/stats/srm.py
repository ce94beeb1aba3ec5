"""Sample ratio mismatch: is the observed split of units what the weights promised?"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from scipy import stats as scipy_stats

from services.scorecard.stats.errors import ErrorCode, InputError, finite_or_none

DEFAULT_SRM_THRESHOLD = 0.001
DEFAULT_SRM_MIN_UNITS = 100


@dataclass(frozen=True)
class SrmResult:
    """`judged` is False below the minimum unit count: too few units to call a mismatch."""

    chi2: float | None
    p_value: float | None
    mismatch: bool
    threshold: float
    judged: bool
    observed: dict[str, int] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "chi2": finite_or_none(self.chi2),
            "p_value": finite_or_none(self.p_value),
            "mismatch": self.mismatch,
            "threshold": self.threshold,
            "judged": self.judged,
            "observed": dict(self.observed),
            "expected": {key: finite_or_none(value) for key, value in self.expected.items()},
        }


def _srm_input_errors(counts: Mapping[str, int], weights: Mapping[str, float], threshold: float) -> list[InputError]:
    errors: list[InputError] = []
    if not 0 < threshold < 1:
        errors.append(
            InputError(ErrorCode.INVALID_PARAMETER, "threshold", "threshold must be strictly between 0 and 1")
        )
    if set(counts) != set(weights) or len(counts) < 2:
        errors.append(
            InputError(
                ErrorCode.INVALID_PARAMETER,
                "weights",
                "counts and weights must name the same variants, at least two of them",
            )
        )
    for key, count in counts.items():
        if isinstance(count, bool) or not isinstance(count, int):
            errors.append(
                InputError(
                    ErrorCode.NON_INTEGER_COUNT,
                    f"counts.{key}",
                    f"count for {key!r} must be an integer, got {count!r}",
                )
            )
        elif count < 0:
            errors.append(
                InputError(
                    ErrorCode.NEGATIVE_COUNT,
                    f"counts.{key}",
                    f"count for {key!r} must be >= 0, got {count}",
                )
            )
    for key, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            valid = False
        else:
            valid = math.isfinite(weight) and weight > 0
        if not valid:
            errors.append(
                InputError(
                    ErrorCode.INVALID_PARAMETER,
                    f"weights.{key}",
                    f"weight for {key!r} must be a positive finite number, got {weight!r}",
                )
            )
    return errors


def srm_chi_square(
    counts: Mapping[str, int],
    weights: Mapping[str, float],
    threshold: float = DEFAULT_SRM_THRESHOLD,
    min_units: int = DEFAULT_SRM_MIN_UNITS,
) -> SrmResult | list[InputError]:
    """Pearson chi-square goodness of fit of unit counts to the configured weights.

    Weights are normalised to sum to 1 (the registry rejects unnormalised configs at write
    time; here only their proportions matter). Uses scipy.stats.chisquare with k - 1 dof.
    A mismatch is flagged when p < threshold and at least `min_units` units were counted.
    """
    errors = _srm_input_errors(counts, weights, threshold)
    if errors:
        return errors
    keys = list(counts)
    total = sum(counts[key] for key in keys)
    weight_total = sum(weights[key] for key in keys)
    expected = {key: total * weights[key] / weight_total for key in keys}
    if total == 0:
        return SrmResult(None, None, False, threshold, False, dict(counts), expected)
    result = scipy_stats.chisquare([counts[key] for key in keys], [expected[key] for key in keys])
    chi2, p_value = float(result.statistic), float(result.pvalue)
    judged = total >= min_units
    return SrmResult(
        chi2=chi2,
        p_value=p_value,
        mismatch=judged and p_value < threshold,
        threshold=threshold,
        judged=judged,
        observed=dict(counts),
        expected=expected,
    )
