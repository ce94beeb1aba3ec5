"""Quantile metrics: golden values, agreement with the classical order-statistic CI for iid
data, and seeded simulations of event-level data clustered by unit (coverage, A/A rate)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as scipy_stats

from services.scorecard.stats import AnalysisError, ErrorCode
from services.scorecard.stats.quantile import (
    QuantileStats,
    QuantileTestResult,
    compare_quantiles,
    minimum_events,
    outer_window_probabilities,
    quantile_estimate,
    quantile_test,
    share_below_variance,
)


def _order_statistic(sorted_values: np.ndarray, probability: float) -> float:
    """x_(k), k = max(1, ceil(N q)): the inverse empirical CDF the block is defined with."""
    rank = max(1, math.ceil(len(sorted_values) * probability - 1e-12))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def quantile_stats_from_events(
    values: np.ndarray, units: np.ndarray, probability: float, n_units: int | None = None
) -> QuantileStats:
    """Plain-Python reference of what the metrics job must emit (`units` holds 0..n_units-1)."""
    n_units = int(units.max()) + 1 if n_units is None else n_units
    ordered = np.sort(values)
    value = _order_statistic(ordered, probability)
    lower_p, upper_p = outer_window_probabilities(probability, len(values))
    below = np.bincount(units, weights=(values <= value).astype(float), minlength=n_units)
    events = np.bincount(units, minlength=n_units).astype(float)
    return QuantileStats(
        probability=probability,
        n_units=n_units,
        n_events=len(values),
        value=value,
        lower_probability=lower_p,
        upper_probability=upper_p,
        lower_value=_order_statistic(ordered, lower_p),
        upper_value=_order_statistic(ordered, upper_p),
        events_below=float(below.sum()),
        events_below_squares=float(below @ below),
        events_squares=float(events @ events),
        events_products=float(below @ events),
    )


# A fixed small dataset: 8 units, 40 events, page loads in ms (unit i owns events[i]).
GOLDEN_BASELINE = [
    [120, 135, 180],
    [95, 101, 99, 240, 310],
    [150],
    [410, 390, 405, 420],
    [88, 92, 130, 145, 160, 170],
    [210, 205],
    [140, 155, 133, 128, 300],
    [111, 260, 275, 190, 185, 230, 99, 350, 121, 142],
]
GOLDEN_VARIANT = [
    [100, 112, 160],
    [90, 95, 93, 200, 280],
    [130],
    [360, 350, 372, 380],
    [80, 85, 120, 130, 140, 150],
    [190, 185],
    [125, 140, 120, 115, 270],
    [100, 230, 250, 170, 165, 210, 90, 320, 110, 128],
]


def _from_nested(events_per_unit: list[list[int]], probability: float) -> QuantileStats:
    values = np.array([v for unit in events_per_unit for v in unit], dtype=float)
    units = np.array([u for u, unit in enumerate(events_per_unit) for _ in unit])
    return quantile_stats_from_events(values, units, probability)


def test_reference_block_on_the_golden_dataset():
    stats = _from_nested(GOLDEN_BASELINE, 0.5)
    assert (stats.n_units, stats.n_events) == (8, 36)
    assert stats.value == 155.0  # 18th of 36 sorted values
    assert stats.events_below == 18.0
    assert stats.events_below_squares == 2 * 2 + 3 * 3 + 1 + 0 + 4 * 4 + 0 + 4 * 4 + 4 * 4
    assert stats.events_squares == 9 + 25 + 1 + 16 + 36 + 4 + 25 + 100
    assert stats.events_products == 2 * 3 + 3 * 5 + 1 + 4 * 6 + 4 * 5 + 4 * 10
    # Ranks ceil(36 * 0.3367) = 13 and ceil(36 * 0.6633) = 24 of the sorted values.
    assert (stats.lower_value, stats.upper_value) == (135.0, 205.0)
    assert stats.lower_probability == pytest.approx(0.5 - 1.959964 * math.sqrt(0.25 / 36), rel=1e-6)


# By hand: linearised (S_u - M_u / 2) / 4.5 has sum of squares 10 / 4.5^2 over 7 dof, / 8 units;
# f = (p_U - p_L) / (205 - 135). The rest follows and is pinned here.
GOLDEN_SHARE_VARIANCE = 10.0 / 7.0 / 4.5**2 / 8.0
GOLDEN_DENSITY = 2 * 1.959963984540054 * math.sqrt(0.25 / 36) / 70.0
GOLDEN_SE = 29.272893388207198
GOLDEN_CI = (-72.37381676416678, 42.37381676416678)
GOLDEN_P = 0.6083574797338062
GOLDEN_RELATIVE_CI = (-0.4504525155300033, 0.2569041284332291)


def test_golden_values_p50():
    result = quantile_test(_from_nested(GOLDEN_BASELINE, 0.5), _from_nested(GOLDEN_VARIANT, 0.5))
    assert isinstance(result, QuantileTestResult)
    assert result.baseline.value == 155.0
    assert result.variant.value == 140.0
    assert result.effect == -15.0
    # Hand-checkable pieces: F_hat = 18/36, f_hat = (p_U - p_L) / (x_U - x_L).
    assert result.baseline.share_below == 0.5
    assert result.baseline.share_below_variance == pytest.approx(GOLDEN_SHARE_VARIANCE, rel=1e-9)
    assert result.baseline.density == pytest.approx(GOLDEN_DENSITY, rel=1e-9)
    assert result.standard_error == pytest.approx(GOLDEN_SE, rel=1e-6)
    assert result.ci == pytest.approx(GOLDEN_CI, rel=1e-6)
    assert result.p_value == pytest.approx(GOLDEN_P, rel=1e-6)
    assert result.relative_effect == pytest.approx(-15.0 / 155.0, rel=1e-12)
    assert result.relative_ci == pytest.approx(GOLDEN_RELATIVE_CI, rel=1e-6)


def test_share_below_variance_is_the_ratio_delta_method_by_hand():
    stats = _from_nested(GOLDEN_BASELINE, 0.5)
    below = np.array([2, 3, 1, 0, 4, 0, 4, 4], dtype=float)
    events = np.array([3, 5, 1, 4, 6, 2, 5, 10], dtype=float)
    ratio = below.sum() / events.sum()
    linearised = (below - ratio * events) / events.mean()  # Deng et al. 2018, ratio linearisation
    assert share_below_variance(stats) == pytest.approx(np.var(linearised, ddof=1) / 8, rel=1e-12)


def test_one_event_per_unit_reduces_to_the_binomial_variance():
    rng = np.random.default_rng(7)
    values = rng.normal(size=500)
    stats = quantile_stats_from_events(values, np.arange(500), 0.9)
    share = stats.events_below / stats.n_events
    assert share_below_variance(stats) == pytest.approx(share * (1 - share) / 499, rel=1e-12)


@pytest.mark.parametrize("probability", [0.5, 0.9])
def test_iid_interval_agrees_with_the_binomial_order_statistic_interval(probability):
    rng = np.random.default_rng(11)
    n = 20_000
    values = rng.normal(loc=100.0, scale=15.0, size=n)
    stats = quantile_stats_from_events(values, np.arange(n), probability)
    estimate = quantile_estimate(stats)
    halfwidth = 1.959964 * math.sqrt(estimate.variance)
    ours = (estimate.value - halfwidth, estimate.value + halfwidth)
    # Classical distribution-free CI: ranks from Binomial(n, p) quantiles (e.g. Hahn & Meeker).
    ordered = np.sort(values)
    low_rank = int(scipy_stats.binom.ppf(0.025, n, probability))
    high_rank = int(scipy_stats.binom.ppf(0.975, n, probability)) + 1
    classical = (ordered[low_rank - 1], ordered[high_rank - 1])
    width = classical[1] - classical[0]
    assert ours[1] - ours[0] == pytest.approx(width, rel=0.05)
    assert ours[0] == pytest.approx(classical[0], abs=0.1 * width)
    assert ours[1] == pytest.approx(classical[1], abs=0.1 * width)


def test_outer_ci_with_clustered_ranks_is_the_papers_interval():
    """Reading the order statistics at p -+ z sd_clustered(F_hat) makes z sd(Q) their half-gap."""
    values, units, n_units = _clustered_events(np.random.default_rng(3), n_units=2000, shift=0.0)
    iid = quantile_stats_from_events(values, units, 0.9, n_units)
    sd = math.sqrt(share_below_variance(iid))
    ordered = np.sort(values)
    lower_p, upper_p = 0.9 - 1.959964 * sd, 0.9 + 1.959964 * sd
    lower, upper = _order_statistic(ordered, lower_p), _order_statistic(ordered, upper_p)
    paper = replace(iid, lower_probability=lower_p, upper_probability=upper_p, lower_value=lower, upper_value=upper)
    assert 1.959964 * math.sqrt(quantile_estimate(paper).variance) == pytest.approx((upper - lower) / 2, rel=1e-9)
    # Same interval, up to the density estimate's bandwidth, as the iid-window block.
    assert quantile_estimate(paper).variance == pytest.approx(quantile_estimate(iid).variance, rel=0.25)


def test_clustering_widens_the_interval():
    values, units, n_units = _clustered_events(np.random.default_rng(5), n_units=2000, shift=0.0)
    clustered = quantile_estimate(quantile_stats_from_events(values, units, 0.9, n_units))
    as_if_iid = quantile_estimate(quantile_stats_from_events(values, np.arange(len(values)), 0.9))
    assert clustered.variance > 1.5 * as_if_iid.variance


def test_too_few_units_and_events_are_typed_errors():
    small = _from_nested(GOLDEN_BASELINE, 0.5)
    one_unit = _from_nested([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], 0.5)
    result = quantile_test(small, one_unit)
    assert isinstance(result, AnalysisError)
    assert result.code is ErrorCode.TOO_FEW_UNITS
    p99 = _from_nested(GOLDEN_BASELINE, 0.99)
    assert minimum_events(0.99) == 381
    result = quantile_test(p99, p99)
    assert isinstance(result, AnalysisError)
    assert result.code is ErrorCode.TOO_FEW_UNITS
    assert "36 events" in result.message and "381" in result.message
    empty = QuantileStats(0.5, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    result = quantile_test(empty, small)
    assert isinstance(result, AnalysisError)
    assert result.code is ErrorCode.EMPTY_VARIANT


def test_point_mass_in_both_variants_has_zero_variance():
    constant = _from_nested([[5, 5, 5], [5, 5], [5, 5, 5, 5]] * 3, 0.5)
    result = quantile_test(constant, constant)
    assert isinstance(result, AnalysisError)
    assert result.code is ErrorCode.ZERO_VARIANCE


def test_comparison_document_shape():
    comparison = compare_quantiles(
        "control", _from_nested(GOLDEN_BASELINE, 0.5), "treatment", _from_nested(GOLDEN_VARIANT, 0.5)
    )
    data = comparison.to_dict()
    assert data["baseline_mean"] == 155.0
    assert data["variant_mean"] == 140.0
    assert data["absolute_ci"] == pytest.approx(list(GOLDEN_CI), rel=1e-6)
    assert data["significant"] is (GOLDEN_P < 0.05)
    assert data["error"] is None
    failed = compare_quantiles(
        "control", _from_nested(GOLDEN_BASELINE, 0.99), "treatment", _from_nested(GOLDEN_VARIANT, 0.99)
    )
    assert failed.to_dict()["error"]["code"] == "too_few_units"


# --- Seeded simulations -------------------------------------------------------------------

MU, SIGMA_UNIT, SIGMA_EVENT, EVENTS_PER_UNIT = math.log(800.0), 0.5, 0.6, 3.0


def _clustered_events(rng: np.random.Generator, n_units: int, shift: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Page loads: log x = MU + shift + unit effect + event noise; Poisson-many events per unit."""
    counts = rng.poisson(EVENTS_PER_UNIT, size=n_units)
    units = np.repeat(np.arange(n_units), counts)
    unit_effect = rng.normal(0.0, SIGMA_UNIT, size=n_units)
    logs = MU + shift + unit_effect[units] + rng.normal(0.0, SIGMA_EVENT, size=len(units))
    return np.exp(logs), units, n_units


def _true_quantile(probability: float, shift: float) -> float:
    # Event counts are independent of the unit effect, so events are marginally lognormal.
    sigma = math.hypot(SIGMA_UNIT, SIGMA_EVENT)
    return math.exp(MU + shift + sigma * scipy_stats.norm.ppf(probability))


def _simulate_variant(
    rng: np.random.Generator, replications: int, n_units: int, probability: float, shift: float
) -> list[QuantileStats]:
    """One variant's block in each replication, vectorised over all replications at once."""
    counts = rng.poisson(EVENTS_PER_UNIT, size=(replications, n_units))
    unit_ids = np.repeat(np.arange(replications * n_units), counts.ravel())
    replication_of_event = unit_ids // n_units
    unit_effect = rng.normal(0.0, SIGMA_UNIT, size=replications * n_units)
    logs = MU + shift + unit_effect[unit_ids] + rng.normal(0.0, SIGMA_EVENT, size=len(unit_ids))
    # Sort within replications in one pass: logs stay well inside +-50 of MU, so an offset of
    # 100 per replication keeps the blocks apart (and keeps keys exact to ~1e-10).
    offsets = np.arange(replications) * 100.0
    keys = offsets[replication_of_event] + logs
    sorted_keys = np.sort(keys)
    n_events = counts.sum(axis=1)
    starts = np.concatenate(([0], np.cumsum(n_events)[:-1]))

    def read(probabilities: np.ndarray) -> np.ndarray:
        ranks = np.clip(np.ceil(n_events * probabilities - 1e-12), 1, n_events).astype(np.int64)
        return sorted_keys[starts + ranks - 1]

    halfwidth = scipy_stats.norm.ppf(0.975) * np.sqrt(probability * (1 - probability) / n_events)
    lower_p, upper_p = probability - halfwidth, probability + halfwidth
    quantile_key = read(np.full(replications, probability))
    quantile_log, lower_log, upper_log = quantile_key - offsets, read(lower_p) - offsets, read(upper_p) - offsets
    at_or_below = (keys <= quantile_key[replication_of_event]).astype(float)
    below = np.bincount(unit_ids, weights=at_or_below, minlength=replications * n_units).reshape(counts.shape)
    events = counts.astype(float)
    return [
        QuantileStats(
            probability=probability,
            n_units=n_units,
            n_events=int(n_events[r]),
            value=float(math.exp(quantile_log[r])),
            lower_probability=float(lower_p[r]),
            upper_probability=float(upper_p[r]),
            lower_value=float(math.exp(lower_log[r])),
            upper_value=float(math.exp(upper_log[r])),
            events_below=float(below[r].sum()),
            events_below_squares=float(below[r] @ below[r]),
            events_squares=float(events[r] @ events[r]),
            events_products=float(below[r] @ events[r]),
        )
        for r in range(replications)
    ]


REPLICATIONS = 2000
SIM_UNITS = 1000


def _results(probability: float, shift: float, seed: int) -> list[QuantileTestResult]:
    rng = np.random.default_rng(seed)
    baselines = _simulate_variant(rng, REPLICATIONS, SIM_UNITS, probability, 0.0)
    variants = _simulate_variant(rng, REPLICATIONS, SIM_UNITS, probability, shift)
    results = [quantile_test(b, v) for b, v in zip(baselines, variants, strict=True)]
    assert all(isinstance(r, QuantileTestResult) for r in results)
    return [r for r in results if isinstance(r, QuantileTestResult)]


@pytest.mark.parametrize(("probability", "seed"), [(0.5, 101), (0.9, 102), (0.99, 103)])
def test_coverage_of_the_true_difference_and_relative_difference(probability, seed):
    shift = 0.1  # +10.5% on every quantile
    results = _results(probability, shift, seed)
    truth = _true_quantile(probability, shift) - _true_quantile(probability, 0.0)
    covered = np.mean([r.ci[0] <= truth <= r.ci[1] for r in results])
    relative_truth = math.exp(shift) - 1.0
    relative = [r.relative_ci for r in results if r.relative_ci is not None]
    relative_covered = np.mean([ci[0] <= relative_truth <= ci[1] for ci in relative])
    # 2000 replications: sd of a 0.95 coverage estimate is 0.0049, so the band is +-4 sd.
    assert 0.93 <= covered <= 0.97, covered
    assert 0.93 <= relative_covered <= 0.97, relative_covered


@pytest.mark.parametrize(("probability", "seed"), [(0.5, 201), (0.9, 202), (0.99, 203)])
def test_aa_false_positive_rate(probability, seed):
    results = _results(probability, 0.0, seed)
    rate = np.mean([r.p_value < 0.05 for r in results])
    # sd of a 0.05 rate over 2000 replications is 0.0049: the band is about +-3 sd.
    assert 0.035 <= rate <= 0.065, rate
