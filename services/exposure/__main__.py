"""`python -m services.exposure`: serve the exposure API with uvicorn."""

from __future__ import annotations

import logging

from services.common.logs import configure_logging
from services.common.runtime import serve
from services.exposure.app import create_app
from services.exposure.settings import ExposureSettings


def main() -> None:
    settings = ExposureSettings()
    configure_logging("exposure", settings.log_level)
    # kafka-python narrates every connection at INFO and logs each failed reconnect (10/s while
    # the broker is away) as an error; the service logs broker state changes itself.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    for chatty in ("kafka.net", "kafka.cluster"):
        logging.getLogger(chatty).setLevel(logging.CRITICAL)
    serve(create_app(settings), settings.host, settings.exposure_port, graceful_seconds=10)


if __name__ == "__main__":
    main()
