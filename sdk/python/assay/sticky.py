"""Sticky stores for the SDK's local mode.

A sticky store remembers the first variant a unit got, so later changes of targeting or
traffic never move it. `RedisStickyStore` uses the same key layout as the assignment
service (`assay:sticky:{<unit_id>}`, one hash field per experiment), so local-mode SDKs and
the service share stickiness when they share a Redis.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Protocol


def sticky_key(unit_id: str) -> str:
    return f"assay:sticky:{{{unit_id}}}"


class StickyStore(Protocol):
    def get(self, unit_id: str, experiment: str) -> str | None:
        """The stored variant, or None."""

    def set_if_absent(self, unit_id: str, experiment: str, variant: str) -> tuple[str, bool]:
        """Store `variant` unless one is stored; return (stored variant, whether this call stored it)."""


class InMemoryStickyStore:
    """Process-local store with a size bound (oldest units forgotten first)."""

    def __init__(self, max_units: int = 1_000_000) -> None:
        self.max_units = max_units
        self._units: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, unit_id: str, experiment: str) -> str | None:
        with self._lock:
            return self._units.get(unit_id, {}).get(experiment)

    def set_if_absent(self, unit_id: str, experiment: str, variant: str) -> tuple[str, bool]:
        with self._lock:
            assignments = self._units.setdefault(unit_id, {})
            self._units.move_to_end(unit_id)
            if len(self._units) > self.max_units:
                self._units.popitem(last=False)
            if experiment in assignments:
                return assignments[experiment], False
            assignments[experiment] = variant
            return variant, True


class RedisStickyStore:
    """Backed by any redis-py compatible client (`redis.Redis(decode_responses=True)`).

    The SDK does not depend on redis-py; pass your own client.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, unit_id: str, experiment: str) -> str | None:
        value = self.client.hget(sticky_key(unit_id), experiment)
        return value.decode() if isinstance(value, bytes) else value

    def set_if_absent(self, unit_id: str, experiment: str, variant: str) -> tuple[str, bool]:
        # HSETNX is atomic: of two concurrent first writers exactly one wins.
        if self.client.hsetnx(sticky_key(unit_id), experiment, variant):
            return variant, True
        stored = self.get(unit_id, experiment)
        return (stored, False) if stored is not None else (variant, False)
