"""The numpy pieces of the per-unit arithmetic (`unitmath`) against exact Python integers.

Whole passes are compared with the Spark frames in test_job_one_pass.py and test_micros.py;
these pin the pieces whose edge cases a random lake rarely reaches: products beyond longs,
keys too wide to pack, running sums that could leave 64 bits."""

from __future__ import annotations

import random

import numpy as np
import pytest

from services.metrics.job import transforms as tf
from services.metrics.job import unitmath as um
from tests.unit.metrics.test_micros import rounded_product


def test_products_round_like_the_frames() -> None:
    rng = random.Random(29)
    edge = tf.LONG_FACTOR
    pairs = [(1000, 500), (-1000, 500), (1000, -499), (-1, 1), (0, -5), (edge, edge), (-edge, edge),
             (edge + 1, edge), (edge + 1, -(edge + 1)), (10**12, 3), (-(10**12), 10**9), (1_500_000, -1)]  # fmt: skip
    for _ in range(5000):
        scale = rng.choice([10**3, 10**6, 10**9, edge, 10**12, 10**15])
        pairs.append((rng.randint(-scale, scale), rng.randint(-scale, scale)))
    fits = [(a, b) for a, b in pairs if abs(rounded_product(a, b)) < um.SAFE]
    left, right = (np.array(column, np.int64) for column in zip(*fits, strict=True))
    assert um._product(left, right).tolist() == [rounded_product(a, b) for a, b in fits]


def test_a_product_beyond_64_bits_is_an_overflow() -> None:
    with pytest.raises(um.Overflow):
        um._product(np.array([3 * 10**12], np.int64), np.array([3 * 10**12], np.int64))


@pytest.mark.parametrize("widths", [(40, 9, 30, 30), (2**40, 2**20, 30, 30)], ids=["packed", "too-wide"])
def test_keys_sort_and_group_as_lexicographic_order(widths: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    columns = tuple(rng.integers(0, width, 2000) for width in widths)
    key = um._Key(columns)
    assert (key.packed is not None) == (widths[0] < 2**20)
    order = key.order()
    rows = sorted(zip(*(column.tolist() for column in columns), strict=True))
    ordered = list(zip(*(column[order].tolist() for column in columns), strict=True))
    assert ordered == rows
    taken = key.take(order)
    for leading in range(1, len(widths) + 1):
        expected = [i == 0 or rows[i][:leading] != rows[i - 1][:leading] for i in range(len(rows))]
        assert taken.starts(leading).tolist() == expected


def test_running_sums_restart_per_group_and_refuse_to_overflow() -> None:
    values = np.array([1, 2, 3, 10, 20, -5, 7], np.int64)
    starts = np.array([True, False, False, True, False, False, True])
    assert um._running(values, starts).tolist() == [1, 3, 6, 10, 30, 25, 7]
    assert um._running(values[:0], starts[:0]).tolist() == []
    with pytest.raises(um.Overflow):
        um._running(np.array([2**61, 2**61], np.int64), np.array([True, False]))
