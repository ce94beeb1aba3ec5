"""`python -m services.assignment`: serve the assignment API with uvicorn."""

from __future__ import annotations

from services.assignment.app import create_app
from services.assignment.settings import AssignmentSettings
from services.common.logs import configure_logging
from services.common.runtime import serve


def main() -> None:
    settings = AssignmentSettings()
    configure_logging("assignment", settings.log_level)
    serve(create_app(settings), settings.host, settings.assignment_port, graceful_seconds=5)


if __name__ == "__main__":
    main()
