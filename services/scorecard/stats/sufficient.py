"""Sufficient statistics: the only view of the data the engine ever gets.

The metrics job emits, per (experiment, metric, variant), these sums over units. They add
together (partitions, days), so the engine never needs raw rows. Shapes follow docs/metrics.md
"Metrics"; field names are part of the results-document contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar


@dataclass(frozen=True)
class SampleStats:
    """n units, sum over units of the metric value y, and sum of y**2."""

    n: int
    sum: float
    sum_squares: float

    def __add__(self, other: SampleStats) -> SampleStats:
        if not isinstance(other, SampleStats):
            return NotImplemented
        return SampleStats(
            n=self.n + other.n,
            sum=self.sum + other.sum,
            sum_squares=self.sum_squares + other.sum_squares,
        )


@dataclass(frozen=True)
class CovariateStats:
    """CUPED pre-exposure covariate x of the same units.

    `sum_products` is the sum over units of metric x covariate (for ratio metrics: numerator
    x covariate). `denominator_products` (sum of denominator x covariate) is an optional
    extension of the documented block: only ratio metrics need it, and CUPED for a ratio
    metric is applied only when it is present.
    """

    sum: float
    sum_squares: float
    sum_products: float
    denominator_products: float | None = None

    def __add__(self, other: CovariateStats) -> CovariateStats:
        if not isinstance(other, CovariateStats):
            return NotImplemented
        if (self.denominator_products is None) != (other.denominator_products is None):
            raise ValueError("cannot add covariate blocks with and without denominator_products")
        products = None
        if self.denominator_products is not None and other.denominator_products is not None:
            products = self.denominator_products + other.denominator_products
        return CovariateStats(
            sum=self.sum + other.sum,
            sum_squares=self.sum_squares + other.sum_squares,
            sum_products=self.sum_products + other.sum_products,
            denominator_products=products,
        )


@dataclass(frozen=True)
class DenominatorStats:
    """Ratio-metric denominator d: sums of d, d**2 and numerator x d over the same units."""

    sum: float
    sum_squares: float
    sum_products: float

    def __add__(self, other: DenominatorStats) -> DenominatorStats:
        if not isinstance(other, DenominatorStats):
            return NotImplemented
        return DenominatorStats(
            sum=self.sum + other.sum,
            sum_squares=self.sum_squares + other.sum_squares,
            sum_products=self.sum_products + other.sum_products,
        )


_Block = TypeVar("_Block", CovariateStats, DenominatorStats)


def _add_optional(left: _Block | None, right: _Block | None, what: str) -> _Block | None:
    if left is None and right is None:
        return None
    if left is None or right is None:
        raise ValueError(f"cannot add variant statistics where only one side has a {what} block")
    return left + right


@dataclass(frozen=True)
class VariantStats:
    """Everything one variant contributes to a metric's analysis."""

    key: str
    sample: SampleStats
    covariate: CovariateStats | None = None
    denominator: DenominatorStats | None = None

    def __add__(self, other: VariantStats) -> VariantStats:
        if not isinstance(other, VariantStats):
            return NotImplemented
        if self.key != other.key:
            raise ValueError(f"cannot add statistics of variants {self.key!r} and {other.key!r}")
        return VariantStats(
            key=self.key,
            sample=self.sample + other.sample,
            covariate=_add_optional(self.covariate, other.covariate, "covariate"),
            denominator=_add_optional(self.denominator, other.denominator, "denominator"),
        )
