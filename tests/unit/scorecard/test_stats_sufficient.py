"""Sufficient statistics add together exactly like the data they summarise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from services.scorecard.stats import CovariateStats, DenominatorStats, SampleStats, VariantStats


def _integer_valued_variant(rng: np.random.Generator, size: int, stats_from_arrays) -> VariantStats:
    # Integer-valued data keep every sum exact in floating point, so equality is exact.
    values = rng.integers(-50, 50, size).astype(float)
    covariate = rng.integers(0, 20, size).astype(float)
    denominator = rng.integers(1, 5, size).astype(float)
    return stats_from_arrays("v", values, covariate, denominator)


def test_addition_is_associative_and_commutative(stats_from_arrays):
    rng = np.random.default_rng(11)
    a, b, c = (_integer_valued_variant(rng, size, stats_from_arrays) for size in (5, 17, 40))
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a


def test_sum_of_parts_equals_stats_of_concatenated_data(stats_from_arrays):
    rng = np.random.default_rng(3)
    values, covariate = rng.normal(size=(2, 1000))
    denominator = rng.integers(1, 4, 1000).astype(float)
    whole = stats_from_arrays("v", values, covariate, denominator)
    parts = [
        stats_from_arrays("v", values[i : i + 250], covariate[i : i + 250], denominator[i : i + 250])
        for i in range(0, 1000, 250)
    ]
    total = parts[0] + parts[1] + parts[2] + parts[3]
    assert total.sample.n == whole.sample.n
    for got, want in (
        (total.sample, whole.sample),
        (total.covariate, whole.covariate),
        (total.denominator, whole.denominator),
    ):
        got_fields, want_fields = dataclasses.asdict(got), dataclasses.asdict(want)
        for name, value in want_fields.items():
            assert got_fields[name] == pytest.approx(value, rel=1e-9, abs=1e-9)


def test_blocks_add_fieldwise():
    assert SampleStats(2, 1.0, 3.0) + SampleStats(3, 2.0, 5.0) == SampleStats(5, 3.0, 8.0)
    assert CovariateStats(1.0, 2.0, 3.0) + CovariateStats(1.0, 1.0, 1.0) == CovariateStats(2.0, 3.0, 4.0)
    assert DenominatorStats(1.0, 2.0, 3.0) + DenominatorStats(4.0, 5.0, 6.0) == DenominatorStats(5.0, 7.0, 9.0)


def test_stats_are_frozen():
    stats = SampleStats(1, 1.0, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(stats, "n", 2)  # noqa: B010


def test_adding_different_variants_is_a_programmer_error():
    a = VariantStats("a", SampleStats(1, 1.0, 1.0))
    b = VariantStats("b", SampleStats(1, 1.0, 1.0))
    with pytest.raises(ValueError, match="variants"):
        _ = a + b


def test_adding_with_and_without_a_covariate_block_is_a_programmer_error():
    a = VariantStats("a", SampleStats(1, 1.0, 1.0), CovariateStats(1.0, 1.0, 1.0))
    b = VariantStats("a", SampleStats(1, 1.0, 1.0))
    with pytest.raises(ValueError, match="covariate"):
        _ = a + b
