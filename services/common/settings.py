"""Settings shared by every service; each service subclasses `ServiceSettings`.

Values come from `ASSAY_*` environment variables and are validated at start-up: outside
`ASSAY_ENV=dev` a service refuses to start without API keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.catalog import DEFAULT_CATALOG
from services.common.ratelimit import Limit, RateLimits

DEV_ADMIN_KEY = "dev-admin-key"
DEV_SDK_KEY = "dev-sdk-key"
MIN_KEY_LENGTH = 16


def split_keys(raw: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in raw.split(",") if k.strip())


class ServiceSettings(BaseSettings):
    """Every service reads these (the metrics ingest and job ignore the API keys)."""

    model_config = SettingsConfigDict(env_prefix="ASSAY_", extra="ignore")

    env: str = Field(
        "production", description="`dev` (what `make up` sets) allows the dev keys `dev-admin-key` / `dev-sdk-key`"
    )
    admin_keys: str = Field("", repr=False, description="comma-separated admin API keys, each >= 16 characters")
    sdk_keys: str = Field("", repr=False, description="comma-separated SDK API keys, each >= 16 characters")
    sdk_can_read_scorecards: bool = Field(False, description="let SDK keys read scorecards too")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis (registry, sticky assignments, audit)")
    redis_timeout_ms: int = Field(200, ge=1, le=60_000, description="socket timeout of Redis calls (then degrade)")
    metrics_catalog: Path = Field(
        DEFAULT_CATALOG,
        description="metric catalog YAML (the job computes it; experiment writes are checked against it)",
    )
    data_dir: Path = Field(Path(".assay"), description="local state: Redis data, lake, results, spool, logs, pid files")
    host: str = Field("127.0.0.1", description="interface the HTTP servers bind")
    log_level: str = Field("INFO", description="JSON log lines on stderr, with the request id")
    access_log: bool = Field(True, description="one JSON log line per request")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="request body limit; more is a 413")
    # Per service instance (buckets live in the process). Per key: far above what one SDK key
    # sends (benchmarks push a few thousand requests a second through one key); without a
    # valid key, per client address: far above a browser's needs, low enough to slow guessing.
    rate_limit_per_second: float = Field(20_000, ge=0, description="requests per second per API key; 0: off")
    rate_limit_burst: int = Field(40_000, ge=1, description="token bucket size per API key")
    rate_limit_anonymous_per_second: float = Field(
        100, ge=0, description="requests per second per client address without a valid key; 0: off"
    )
    rate_limit_anonymous_burst: int = Field(500, ge=1, description="token bucket size per client address")

    @model_validator(mode="after")
    def _keys_present_outside_dev(self) -> Self:
        if self.is_dev:
            return self
        if not split_keys(self.admin_keys) or not split_keys(self.sdk_keys):
            raise ValueError("ASSAY_ADMIN_KEYS and ASSAY_SDK_KEYS must be set when ASSAY_ENV is not 'dev'")
        short = [k for k in (*self.admin_key_list, *self.sdk_key_list) if len(k) < MIN_KEY_LENGTH]
        if short:
            raise ValueError(f"API keys must be at least {MIN_KEY_LENGTH} characters long")
        return self

    @property
    def rate_limits(self) -> RateLimits:
        return RateLimits(
            per_key=Limit(self.rate_limit_per_second, self.rate_limit_burst),
            anonymous=Limit(self.rate_limit_anonymous_per_second, self.rate_limit_anonymous_burst),
        )

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def admin_key_list(self) -> tuple[str, ...]:
        keys = split_keys(self.admin_keys)
        return keys or ((DEV_ADMIN_KEY,) if self.is_dev else ())

    @property
    def sdk_key_list(self) -> tuple[str, ...]:
        keys = split_keys(self.sdk_keys)
        return keys or ((DEV_SDK_KEY,) if self.is_dev else ())
