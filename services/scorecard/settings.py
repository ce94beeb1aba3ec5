from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import ServiceSettings


class ScorecardSettings(ServiceSettings):
    """The scorecard service (`python -m services.scorecard`)."""

    scorecard_port: int = Field(8003, ge=1, le=65535, description="HTTP port")
    results_dir: Path | None = Field(
        None, description="where the scorecard reads results documents; unset: `<ASSAY_DATA_DIR>/results`, as the job"
    )
    max_analyze_variants: int = Field(50, ge=2, le=1000, description="variants per /v1/analyze request")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="lifetime of a scorecard sign-in")
    secure_cookies: bool | None = Field(
        None,
        description="mark the sign-in cookie Secure (sent over HTTPS only); unset: on outside dev. Behind no "
        "TLS, browsers not on localhost drop it and sign-in fails: terminate TLS in front (docs/deploy.md)",
    )

    @property
    def results_path(self) -> Path:
        return self.results_dir or self.data_dir / "results"

    @property
    def cookie_secure(self) -> bool:
        return (not self.is_dev) if self.secure_cookies is None else self.secure_cookies
