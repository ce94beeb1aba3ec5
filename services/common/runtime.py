"""Process start-up shared by every service entry point."""

from __future__ import annotations

import gc


def tune_garbage_collector() -> None:
    """Objects alive after start-up (modules, app, config) are moved out of the collector's
    reach, and young collections run less often: request handling allocates many short-lived
    objects, and frequent full scans show up as tail latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
