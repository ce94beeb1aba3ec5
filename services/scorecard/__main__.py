"""`python -m services.scorecard`: serve the scorecard API and pages with uvicorn."""

from __future__ import annotations

import uvicorn

from services.common.logs import configure_logging
from services.common.runtime import tune_garbage_collector
from services.scorecard.app import create_app
from services.scorecard.settings import ScorecardSettings


def main() -> None:
    settings = ScorecardSettings()
    configure_logging("scorecard", settings.log_level)
    app = create_app(settings)
    tune_garbage_collector()
    uvicorn.run(app, host=settings.host, port=settings.scorecard_port,
                log_config=None, access_log=False, timeout_graceful_shutdown=5)  # fmt: skip


if __name__ == "__main__":
    main()
