"""Layer slices: experiments sharing a layer own disjoint bucket ranges of the layer's hash
space, so no unit is ever enrolled in two of them. A slice is reserved when the experiment
is created (or moved into the layer while a draft) and released when it stops or is archived.
"""

from __future__ import annotations

from collections.abc import Iterable

from assay.bucketing import BUCKETS, buckets_for_share


class LayerFull(Exception):
    """No free range of the requested size is left in the layer."""


def free_ranges(taken: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    gaps: list[tuple[int, int]] = []
    cursor = 0
    for start, end in sorted(taken):
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < BUCKETS:
        gaps.append((cursor, BUCKETS))
    return gaps


def allocate_slice(layer: str, taken: Iterable[tuple[int, int]], share: float | None) -> tuple[int, int]:
    """First free range big enough for `share` of the layer; the largest free range when
    `share` is None. Raises LayerFull with a sentence the user can act on."""
    gaps = free_ranges(taken)
    free = sum(end - start for start, end in gaps)
    if share is None:
        if not gaps:
            raise LayerFull(f"layer '{layer}' has no free share left; stop or archive an experiment in it")
        return max(gaps, key=lambda gap: (gap[1] - gap[0], -gap[0]))
    size = buckets_for_share(share)
    if size == 0:
        raise LayerFull(f"layer_share {share} is smaller than one bucket (1/{BUCKETS})")
    for start, end in gaps:
        if end - start >= size:
            return (start, start + size)
    raise LayerFull(
        f"layer '{layer}' has no free range of {share:.4g}; {free / BUCKETS:.4g} of it is free "
        f"(largest contiguous range {max((e - s for s, e in gaps), default=0) / BUCKETS:.4g})"
    )
