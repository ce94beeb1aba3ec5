"""Process start-up shared by every service entry point."""

from __future__ import annotations

import gc

import uvicorn
from starlette.types import ASGIApp


def tune_garbage_collector() -> None:
    """Objects alive after start-up (modules, app, config) are moved out of the collector's
    reach, and young collections run less often: request handling allocates many short-lived
    objects, and frequent full scans show up as tail latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def serve(app: ASGIApp, host: str, port: int, *, graceful_seconds: int = 5) -> None:
    """Run `app` with uvicorn the way every Assay service runs: our JSON logging (no uvicorn
    log config, no access log of its own), a tuned collector, a bounded graceful shutdown."""
    tune_garbage_collector()
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False,
                timeout_graceful_shutdown=graceful_seconds)  # fmt: skip
