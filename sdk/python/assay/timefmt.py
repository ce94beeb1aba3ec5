"""RFC 3339 time formatting: the one formatter every part of Assay writes timestamps with.

It lives in the SDK (which installs with httpx, mmh3 and pydantic only) because the SDK
stamps exposures and events too; the services and deploy tools import it from here, so a
timestamp written anywhere in the system has the same shape: UTC, a `Z` suffix, fixed digits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

Precision = Literal["milliseconds", "microseconds"]


def format_rfc3339(moment: datetime, precision: Precision = "milliseconds") -> str:
    """`2026-11-20T10:00:00.123Z`: converted to UTC, finer digits dropped (not rounded)."""
    return moment.astimezone(UTC).isoformat(timespec=precision)[:-6] + "Z"


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (never a naive local one)."""
    return datetime.now(UTC)


def utc_now_rfc3339() -> str:
    """The current time formatted by `format_rfc3339` (what documents and payloads store)."""
    return format_rfc3339(utc_now())
