"""Item timestamps: RFC 3339 strings or epoch milliseconds, normalised to RFC 3339 UTC."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# RFC 3339 section 5.6: a full date, 'T' (or a space, section 5.6 note), a time, and an offset.
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
DAY_MS = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
MIN_EPOCH_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


class TimestampError(ValueError):
    pass


def format_rfc3339(epoch_ms: int) -> str:
    """`2026-11-20T10:00:00.123Z`: UTC, millisecond precision."""
    seconds, millis = divmod(epoch_ms, 1000)
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{millis:03d}Z"
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _epoch_ms(value: float) -> int:
    if isinstance(value, float) and not math.isfinite(value):
        raise TimestampError("timestamp must be a finite number")
    if isinstance(value, float) and not value.is_integer():
        raise TimestampError("epoch-millisecond timestamps must be whole numbers")
    if not MIN_EPOCH_MS <= value <= MAX_EPOCH_MS:
        raise TimestampError("epoch-millisecond timestamp is outside the years 1-9999")
    return int(value)


def parse_timestamp(value: object) -> int:
    """Epoch milliseconds from an RFC 3339 string or an integer of epoch milliseconds."""
    if isinstance(value, bool):
        raise TimestampError("timestamp must be an RFC 3339 string or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        return _epoch_ms(value)
    if not isinstance(value, str):
        raise TimestampError(
            f"timestamp must be an RFC 3339 string or epoch milliseconds, not {type(value).__name__}"
        )
    if len(value) > 40 or not RFC3339.match(value):
        raise TimestampError(
            "timestamp is not RFC 3339: use a form like '2026-11-20T10:00:00Z' or "
            "'2026-11-20T10:00:00.123+02:00' (the offset is required), or epoch milliseconds"
        )
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise TimestampError(f"timestamp is not a real date and time: {exc}") from None
    return (parsed - EPOCH) // ONE_MS


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Timestamps accepted at `now_ms`: not more than `max_future_ms` ahead, not older than
    `horizon_ms`."""

    now_ms: int
    max_future_ms: int
    horizon_ms: int

    def check(self, epoch_ms: int) -> None:
        if epoch_ms > self.now_ms + self.max_future_ms:
            ahead = (epoch_ms - self.now_ms) / 1000
            raise TimestampError(
                f"timestamp is {ahead:.0f} s ahead of server time (at most "
                f"{self.max_future_ms // 1000} s allowed); check the client clock"
            )
        if epoch_ms < self.now_ms - self.horizon_ms:
            hint = " (epoch timestamps must be in milliseconds, not seconds)" if 0 <= epoch_ms < 10**11 else ""
            raise TimestampError(
                f"timestamp {format_rfc3339(epoch_ms)} is older than the "
                f"{self.horizon_ms / DAY_MS:g}-day horizon{hint}"
            )
