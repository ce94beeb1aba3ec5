"""The per-variant point estimate the scorecard shows: per unit, or for a ratio metric the ratio."""

from __future__ import annotations

import pytest

from services.scorecard.scorecard import variant_mean
from services.scorecard.stats.sufficient import DenominatorStats, SampleStats, VariantStats


def test_a_ratio_is_the_sum_of_numerators_over_the_sum_of_denominators_not_per_unit() -> None:
    stats = VariantStats("control", SampleStats(4, 50.0, 650.0), denominator=DenominatorStats(10.0, 26.0, 128.0))
    assert variant_mean("ratio", stats) == pytest.approx(5.0, rel=1e-12)
    assert variant_mean("mean", stats) == pytest.approx(12.5, rel=1e-12)


def test_undefined_estimates_are_none() -> None:
    assert (
        variant_mean("ratio", VariantStats("c", SampleStats(3, 1.0, 1.0), denominator=DenominatorStats(0, 0, 0)))
        is None
    )
    assert variant_mean("ratio", VariantStats("c", SampleStats(0, 0.0, 0.0))) is None
    assert variant_mean("proportion", VariantStats("c", SampleStats(0, 0.0, 0.0))) is None
