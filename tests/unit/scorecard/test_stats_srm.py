"""Sample ratio mismatch against scipy.stats.chisquare."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from services.scorecard.stats import ErrorCode, SrmResult, srm_chi_square


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_scipy_chisquare(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    weights = rng.dirichlet(np.ones(k))
    counts = rng.multinomial(int(rng.integers(200, 100_000)), weights)
    keys = [f"v{i}" for i in range(k)]
    result = srm_chi_square(
        dict(zip(keys, map(int, counts), strict=True)), dict(zip(keys, map(float, weights), strict=True))
    )
    assert isinstance(result, SrmResult)
    expected = scipy_stats.chisquare(counts, weights * counts.sum())
    assert result.chi2 == pytest.approx(expected.statistic, rel=1e-9)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert result.judged is True
    assert result.mismatch == (expected.pvalue < 0.001)


def test_design_example_has_no_mismatch():
    result = srm_chi_square({"control": 5000, "treatment": 5100}, {"control": 0.5, "treatment": 0.5})
    assert isinstance(result, SrmResult)
    assert result.mismatch is False
    assert result.p_value == pytest.approx(scipy_stats.chisquare([5000, 5100]).pvalue, rel=1e-12)
    assert result.threshold == 0.001
    assert result.expected == {"control": 5050.0, "treatment": 5050.0}


def test_clear_mismatch_is_flagged():
    result = srm_chi_square({"control": 5000, "treatment": 5400}, {"control": 0.5, "treatment": 0.5})
    assert isinstance(result, SrmResult)
    assert result.mismatch is True
    assert result.p_value < 0.001


def test_uneven_weights_are_respected():
    result = srm_chi_square({"a": 9000, "b": 1000}, {"a": 0.9, "b": 0.1})
    assert isinstance(result, SrmResult)
    assert result.chi2 == pytest.approx(0.0, abs=1e-12)
    assert result.mismatch is False


def test_below_minimum_count_is_not_judged():
    result = srm_chi_square({"control": 10, "treatment": 40}, {"control": 0.5, "treatment": 0.5})
    assert isinstance(result, SrmResult)
    assert result.p_value < 0.001  # would be a mismatch with enough units
    assert result.judged is False
    assert result.mismatch is False


def test_no_units_at_all():
    result = srm_chi_square({"a": 0, "b": 0}, {"a": 0.5, "b": 0.5})
    assert isinstance(result, SrmResult)
    assert (result.judged, result.mismatch, result.p_value) == (False, False, None)
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("counts", "weights", "code"),
    [
        ({"a": -1, "b": 5}, {"a": 0.5, "b": 0.5}, ErrorCode.NEGATIVE_COUNT),
        ({"a": 1.5, "b": 5}, {"a": 0.5, "b": 0.5}, ErrorCode.NON_INTEGER_COUNT),
        ({"a": 1, "b": 5}, {"a": 0.0, "b": 1.0}, ErrorCode.INVALID_PARAMETER),
        ({"a": 1, "b": 5}, {"a": float("nan"), "b": 1.0}, ErrorCode.INVALID_PARAMETER),
        ({"a": 1, "b": 5}, {"a": 0.5, "c": 0.5}, ErrorCode.INVALID_PARAMETER),
        ({"a": 1}, {"a": 1.0}, ErrorCode.INVALID_PARAMETER),
    ],
)
def test_bad_input_is_typed(counts, weights, code):
    result = srm_chi_square(counts, weights)
    assert isinstance(result, list)
    assert code in {error.code for error in result}


def test_bad_threshold_is_typed():
    result = srm_chi_square({"a": 1, "b": 1}, {"a": 0.5, "b": 0.5}, threshold=1.5)
    assert isinstance(result, list)
    assert [(e.code, e.field) for e in result] == [(ErrorCode.INVALID_PARAMETER, "threshold")]
