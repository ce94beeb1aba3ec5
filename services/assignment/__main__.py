"""`python -m services.assignment`: serve the assignment API with uvicorn."""

from __future__ import annotations

import uvicorn

from services.assignment.app import create_app
from services.assignment.settings import AssignmentSettings
from services.common.logs import configure_logging
from services.common.runtime import tune_garbage_collector


def main() -> None:
    settings = AssignmentSettings()
    configure_logging("assignment", settings.log_level)
    app = create_app(settings)
    tune_garbage_collector()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.assignment_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
