"""Bucketing: golden vectors, reference hashes, and the statistical properties we promise."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import mmh3
import numpy as np
import pytest
from assay.bucketing import (
    BUCKETING_VERSION,
    BUCKETS,
    choose_variant_index,
    in_traffic,
    traffic_bucket,
    variant_bucket,
    variant_ranges,
)
from assay.evaluation import evaluate, hashed_variant
from assay.models import ExperimentConfig
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

GOLDEN = json.loads((Path(__file__).parents[2] / "golden" / "bucketing.json").read_text())


def test_murmur3_reference_values() -> None:
    # Published MurmurHash3_x86_32 test values (seed 0): the hash library itself is pinned.
    assert mmh3.hash("hello", 0, signed=False) == 613153351
    assert mmh3.hash("foo", 0, signed=False) == 4138058784
    assert mmh3.hash("", 0, signed=False) == 0


def test_golden_file_matches_this_bucketing_version() -> None:
    assert GOLDEN["bucketing_version"] == BUCKETING_VERSION
    assert GOLDEN["buckets"] == BUCKETS >= 10_000
    assert len(GOLDEN["cases"]) >= 100


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"{c['salt']}|{c['unit_id'][:12]}")
def test_golden_vector(case: dict) -> None:  # type: ignore[type-arg]
    salt, unit = case["salt"], case["unit_id"]
    assert mmh3.hash(f"{salt}:{unit}", 0, signed=False) == case["hash"]
    assert variant_bucket(salt, unit) == case["variant_bucket"]
    assert traffic_bucket(salt, unit) == case["traffic_bucket"]
    assert in_traffic(salt, unit, case["traffic"]) is case["enrolled"]
    assert choose_variant_index(case["variant_bucket"], case["weights"]) == case["variant_index"]


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=2, max_size=20).filter(lambda w: sum(w) > 0))
def test_variant_ranges_tile_the_bucket_space(raw: list[int]) -> None:
    weights = [w / sum(raw) for w in raw]
    ranges = variant_ranges(weights)
    assert ranges[0][0] == 0 and ranges[-1][1] == BUCKETS
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert end == start
    for (start, end), weight in zip(ranges, weights, strict=True):
        assert abs((end - start) - weight * BUCKETS) <= 1.0


def _config(salt: str, weights: list[float], traffic: float = 1.0) -> ExperimentConfig:
    variants = [{"key": f"v{i}", "weight": w} for i, w in enumerate(weights)]
    return ExperimentConfig(key="k", variants=variants, salt=salt, traffic=traffic)  # type: ignore[arg-type]


def test_weights_are_honoured_chi_square_100k_units() -> None:
    weights = [0.2, 0.3, 0.5]
    config = _config("weights-check", weights)
    counts = np.zeros(3)
    for i in range(100_000):
        counts[int(hashed_variant(config, f"unit-{i}")[1:])] += 1
    result = stats.chisquare(counts, f_exp=np.array(weights) * 100_000)
    assert result.pvalue > 0.001, counts


def test_different_salts_assign_independently() -> None:
    first, second = _config("salt-one", [0.5, 0.5]), _config("salt-two", [0.5, 0.5])
    table = np.zeros((2, 2))
    for i in range(100_000):
        unit = f"unit-{i}"
        table[int(hashed_variant(first, unit)[1:]), int(hashed_variant(second, unit)[1:])] += 1
    _, p_value, _, _ = stats.chi2_contingency(table)
    assert p_value > 0.001, table


def test_traffic_and_variant_hashes_are_independent() -> None:
    config = _config("indep", [0.5, 0.5], traffic=0.5)
    table = np.zeros((2, 2))
    for i in range(50_000):
        unit = f"u{i}"
        table[int(in_traffic("indep", unit, 0.5)), int(hashed_variant(config, unit)[1:])] += 1
    assert stats.chi2_contingency(table)[1] > 0.001


def test_raising_traffic_never_moves_an_enrolled_unit() -> None:
    ramp = [0.01, 0.1, 0.25, 0.5, 0.9, 1.0]
    for i in range(20_000):
        unit = f"ramp-{i}"
        seen = {evaluate(_config("ramp", [0.5, 0.5], t), unit).variant for t in ramp} - {None}
        assert len(seen) <= 1
        enrolled = [in_traffic("ramp", unit, t) for t in ramp]
        assert enrolled == sorted(enrolled)  # once in, in at every higher traffic


def test_traffic_share_is_honoured() -> None:
    enrolled = sum(in_traffic("share", f"u{i}", 0.1) for i in range(100_000))
    assert stats.binomtest(enrolled, 100_000, 0.1).pvalue > 0.001
