"""`python -m services.scorecard`: serve the scorecard API and pages with uvicorn."""

from __future__ import annotations

from services.common.logs import configure_logging
from services.common.runtime import serve
from services.scorecard.app import create_app
from services.scorecard.settings import ScorecardSettings


def main() -> None:
    settings = ScorecardSettings()
    configure_logging("scorecard", settings.log_level)
    serve(create_app(settings), settings.host, settings.scorecard_port)


if __name__ == "__main__":
    main()
