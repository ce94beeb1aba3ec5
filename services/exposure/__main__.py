"""`python -m services.exposure`: serve the exposure API with uvicorn (`ASSAY_WORKERS` processes)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from services.common.logs import configure_logging
from services.common.metrics import forget_dead_workers
from services.common.runtime import serve, serve_workers, tune_garbage_collector
from services.exposure.app import create_app
from services.exposure.settings import ExposureSettings

GRACEFUL_SECONDS = 10


def _configure(settings: ExposureSettings) -> None:
    configure_logging("exposure", settings.log_level)
    # kafka-python narrates every connection at INFO and logs each failed reconnect (10/s while
    # the broker is away) as an error; the service logs broker state changes itself.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    for chatty in ("kafka.net", "kafka.cluster"):
        logging.getLogger(chatty).setLevel(logging.CRITICAL)


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn calls this in each worker it spawns)."""
    settings = ExposureSettings()
    _configure(settings)
    forget_dead_workers()
    app = create_app(settings)
    tune_garbage_collector()
    return app


def main() -> None:
    settings = ExposureSettings()
    _configure(settings)
    if settings.workers == 1:
        serve(create_app(settings), settings.host, settings.exposure_port, graceful_seconds=GRACEFUL_SECONDS)
        return
    serve_workers("services.exposure.__main__:worker_app", settings.host, settings.exposure_port, settings.workers,
                  graceful_seconds=GRACEFUL_SECONDS)  # fmt: skip


if __name__ == "__main__":
    main()
