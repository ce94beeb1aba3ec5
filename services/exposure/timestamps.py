"""Item timestamps: RFC 3339 strings or epoch milliseconds, normalised to RFC 3339 UTC."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from assay.timefmt import format_rfc3339

# RFC 3339 section 5.6: a full date, 'T' (or a space, per its note), a time and an offset.
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimestampError(ValueError):
    pass


def _from_epoch_ms(value: float) -> datetime:
    if isinstance(value, float) and not math.isfinite(value):
        raise TimestampError("timestamp must be a finite number")
    if isinstance(value, float) and not value.is_integer():
        raise TimestampError("epoch-millisecond timestamps must be whole numbers")
    try:
        return EPOCH + timedelta(milliseconds=int(value))
    except OverflowError:
        raise TimestampError("epoch-millisecond timestamp is outside the years 1-9999") from None


def parse_timestamp(value: object) -> datetime:
    """An aware UTC datetime from an RFC 3339 string or an integer of epoch milliseconds."""
    if isinstance(value, bool):
        raise TimestampError("timestamp must be an RFC 3339 string or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        return _from_epoch_ms(value)
    if not isinstance(value, str):
        raise TimestampError(f"timestamp must be an RFC 3339 string or epoch milliseconds, not {type(value).__name__}")
    if len(value) > 40 or not RFC3339.fullmatch(value):
        raise TimestampError(
            "timestamp is not RFC 3339: use a form like '2026-11-20T10:00:00Z' or "
            "'2026-11-20T10:00:00.123+02:00' (the offset is required), or epoch milliseconds"
        )
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise TimestampError(f"timestamp is not a real date and time: {exc}") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise TimestampError("timestamp is outside the years 1-9999 once converted to UTC") from None


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Timestamps accepted at `now`: at most `max_future` ahead, not older than `horizon`."""

    now: datetime
    max_future: timedelta
    horizon: timedelta

    @classmethod
    def at(cls, now: datetime, *, max_future_seconds: float, horizon_days: float) -> TimeWindow:
        return cls(now, timedelta(seconds=max_future_seconds), timedelta(days=horizon_days))

    def check(self, moment: datetime) -> None:
        if moment - self.now > self.max_future:
            ahead = (moment - self.now).total_seconds()
            raise TimestampError(
                f"timestamp is {ahead:.0f} s ahead of server time (at most "
                f"{self.max_future.total_seconds():.0f} s allowed); check the client clock"
            )
        if self.now - moment > self.horizon:
            seconds_hint = moment < EPOCH + timedelta(days=1200)  # epoch seconds read as milliseconds
            hint = " (epoch timestamps must be in milliseconds, not seconds)" if seconds_hint else ""
            raise TimestampError(
                f"timestamp {format_rfc3339(moment)} is older than the "
                f"{self.horizon / timedelta(days=1):g}-day horizon{hint}"
            )
