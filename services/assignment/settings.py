from __future__ import annotations

from pydantic import Field

from services.common.settings import ServiceSettings


class AssignmentSettings(ServiceSettings):
    """The assignment service (`python -m services.assignment`)."""

    assignment_port: int = Field(8001, ge=1, le=65535, description="HTTP port")
    config_refresh_seconds: float = Field(
        1.0, gt=0, le=60, description="config version re-checked this often, in case a pub/sub message was missed"
    )
    redis_retry_seconds: float = Field(1.0, ge=0, le=60, description="pause after a Redis failure")
    max_batch_units: int = Field(1000, ge=1, le=10_000, description="units per /v1/assign/batch; more is a 413")
    max_audit_entries: int = Field(10_000, ge=10, description="audit entries kept per experiment")
    sticky_cache_size: int = Field(200_000, ge=0, description="stored assignments remembered per process")
