"""Shared fixtures for the statistics-engine tests: sufficient statistics from data."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from services.scorecard.stats import CovariateStats, DenominatorStats, SampleStats, VariantStats

StatsFromArrays = Callable[..., VariantStats]


def _stats_from_arrays(
    key: str,
    values: np.ndarray,
    covariate: np.ndarray | None = None,
    denominator: np.ndarray | None = None,
) -> VariantStats:
    """What the metrics job would emit for these unit-level arrays."""
    covariate_block = None
    if covariate is not None:
        products = None if denominator is None else float(np.dot(denominator, covariate))
        covariate_block = CovariateStats(
            sum=float(covariate.sum()),
            sum_squares=float(np.dot(covariate, covariate)),
            sum_products=float(np.dot(values, covariate)),
            denominator_products=products,
        )
    denominator_block = None
    if denominator is not None:
        denominator_block = DenominatorStats(
            sum=float(denominator.sum()),
            sum_squares=float(np.dot(denominator, denominator)),
            sum_products=float(np.dot(values, denominator)),
        )
    return VariantStats(
        key=key,
        sample=SampleStats(int(values.size), float(values.sum()), float(np.dot(values, values))),
        covariate=covariate_block,
        denominator=denominator_block,
    )


@pytest.fixture
def stats_from_arrays() -> StatsFromArrays:
    return _stats_from_arrays


@pytest.fixture
def golden_control() -> VariantStats:
    """GrowthBook gbstats test suite: mean 0.41, sd 3.9, n 3407."""
    n, mean, sd = 3407, 0.41, 3.9
    return VariantStats("control", SampleStats(n, mean * n, (n - 1) * sd**2 + n * mean**2))


@pytest.fixture
def golden_treatment() -> VariantStats:
    """GrowthBook gbstats test suite: mean 0.70, sd 6.2, n 3461."""
    n, mean, sd = 3461, 0.70, 6.2
    return VariantStats("treatment", SampleStats(n, mean * n, (n - 1) * sd**2 + n * mean**2))


def simulate_normal_sums(
    rng: np.random.Generator, n: int, mean: float, sd: float, runs: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sum, sum_squares) of `runs` independent normal samples of size n, drawn exactly.

    For normal data the sample sum and the within-sample sum of squared deviations are
    independent, N(n mean, n sd^2) and sd^2 chi2(n - 1), so no raw rows are needed.
    """
    sums = rng.normal(n * mean, sd * np.sqrt(n), size=runs)
    centred = sd**2 * rng.chisquare(n - 1, size=runs)
    return sums, centred + sums**2 / n


@pytest.fixture
def normal_sums() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return simulate_normal_sums
