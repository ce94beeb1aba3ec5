"""Deterministic bucketing: MurmurHash3 of (salt, unit id) into fixed bucket ranges.

This is the one evaluation code shared by the SDK and the assignment service. Any change
to the output of these functions reshuffles live experiments, so it is versioned
(`BUCKETING_VERSION`) and pinned by `tests/golden/bucketing.json`.

Three independent hash streams (distinct mmh3 seeds) are used so that decisions do not
correlate with each other:
- the variant bucket decides which variant a unit gets (depends on weights only),
- the traffic bucket decides whether the unit is enrolled at all (depends on traffic only),
  so raising traffic only adds units and never moves an enrolled unit to another variant,
- the layer bucket places the unit in one experiment's slice of a layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import mmh3

BUCKETING_VERSION = 1
BUCKETS = 10_000

VARIANT_SEED = 0
TRAFFIC_SEED = 0x7A11FF1C
LAYER_SEED = 0x1A7E45ED


def hash_bucket(salt: str, unit_id: str, seed: int) -> int:
    """Bucket in [0, BUCKETS) of `unit_id` under `salt` for one hash stream."""
    return mmh3.hash(f"{salt}:{unit_id}", seed, signed=False) % BUCKETS


def variant_bucket(salt: str, unit_id: str) -> int:
    return hash_bucket(salt, unit_id, VARIANT_SEED)


def traffic_bucket(salt: str, unit_id: str) -> int:
    return hash_bucket(salt, unit_id, TRAFFIC_SEED)


def layer_bucket(layer: str, unit_id: str) -> int:
    """Bucket in the layer's own hash space; the layer name is the layer's salt."""
    return hash_bucket(f"layer:{layer}", unit_id, LAYER_SEED)


def buckets_for_share(share: float) -> int:
    """Number of buckets covering `share` of the space (0 <= share <= 1)."""
    return round(share * BUCKETS)


def variant_ranges(weights: Sequence[float]) -> list[tuple[int, int]]:
    """Half-open bucket ranges, one per variant, in order, covering [0, BUCKETS).

    Boundaries are rounded cumulative weights, so ranges never overlap and the last one
    always ends at BUCKETS even when the weights carry floating-point error.
    """
    ranges: list[tuple[int, int]] = []
    cumulative = 0.0
    start = 0
    for index, weight in enumerate(weights):
        cumulative += weight
        end = BUCKETS if index == len(weights) - 1 else min(BUCKETS, round(cumulative * BUCKETS))
        ranges.append((start, end))
        start = end
    return ranges


def choose_variant_index(bucket: int, weights: Sequence[float]) -> int:
    """Index of the variant whose range holds `bucket`."""
    for index, (start, end) in enumerate(variant_ranges(weights)):
        if start <= bucket < end:
            return index
    raise ValueError(f"bucket {bucket} is outside every variant range")


def in_traffic(salt: str, unit_id: str, traffic: float) -> bool:
    return traffic_bucket(salt, unit_id) < buckets_for_share(traffic)
