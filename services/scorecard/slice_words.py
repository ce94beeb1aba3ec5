"""The sentences the slice checks put in the scorecard's `warnings`: plain words, each saying what
to do about it. Each starts with a stable tag (`simpson:`, `slice mix:`, `slice srm:`)."""

from __future__ import annotations

from typing import Any

from services.common.results import MISSING_SLICE, OTHER_SLICE
from services.scorecard.stats import SrmResult
from services.scorecard.stats.slices import SliceMixResult

MAX_NAMED_VALUES = 5


def value_label(value: str) -> str:
    """A slice value as people read it: the two buckets the job adds get words."""
    return {OTHER_SLICE: "other values", MISSING_SLICE: "not set"}.get(value, value)


def slice_label(dimension: str, value: str) -> str:
    return f"{dimension} = {value_label(value)}"


def _direction(sign: int) -> str:
    return "positive" if sign > 0 else "negative"


def _values(values: list[str]) -> str:
    named = [value_label(value) for value in values[:MAX_NAMED_VALUES]]
    more = len(values) - len(named)
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def simpson_warning(finding: dict[str, Any], n_variants: int) -> str:
    """'simpson: the overall effect on conversion is positive but negative in slices holding 83% of
    units (country: US, DE); ...'; names the variant when there are several treatments."""
    who = f" of {finding['variant']}" if n_variants > 2 else ""
    dimension = finding["dimension"]
    return (
        f"simpson: the overall effect{who} on {finding['metric']} is {_direction(finding['overall_sign'])} but "
        f"{_direction(-finding['overall_sign'])} in slices holding {finding['share']:.0%} of units ({dimension}: "
        f"{_values(finding['values'])}); the overall number reflects the mix of {dimension} values more than "
        f"the effect within them: read the {dimension} slices before acting on it"
    )


def _largest_shift(result: SliceMixResult) -> tuple[str, str, float, float] | None:
    """(value, variant, baseline share, variant share) of the value whose share moved most."""
    (_, base_shares), *others = result.shares.items()
    shifts = [(abs(shares[value] - base_shares[value]), value, variant, base_shares[value], shares[value])
              for variant, shares in others for value in base_shares]  # fmt: skip
    if not shifts:
        return None
    _, value, variant, before, after = max(shifts)
    return value, variant, before, after


def mix_warning(dimension: str, result: SliceMixResult) -> str:
    baseline = next(iter(result.shares))
    shift = _largest_shift(result)
    detail = ""
    if shift is not None:
        value, variant, before, after = shift
        detail = f": {value_label(value)} holds {before:.0%} of {baseline}'s units but {after:.0%} of {variant}'s"
    return (
        f"slice mix: the split of units by {dimension} differs between variants beyond chance (chi-square "
        f"p = {result.p_value:.2g} < {result.threshold:g}){detail}; units of some {dimension} values are lost or "
        f"misassigned in one variant: check the assignment and exposure logging, and read the {dimension} slices"
    )


def slice_srm_warning(dimension: str, value: str, srm: SrmResult) -> str:
    observed = ", ".join(f"{key} {count:,}" for key, count in srm.observed.items())
    p_value = "n/a" if srm.p_value is None else f"{srm.p_value:.2g}"
    return (
        f"slice srm: {slice_label(dimension, value)} does not have the configured traffic split (p = {p_value} "
        f"< {srm.threshold:g}; units {observed}): its units are lost or misassigned, so do not trust its "
        "effects; check the assignment and exposure logging for it"
    )
