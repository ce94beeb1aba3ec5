"""Snapshots of one run: a cumulative one at the end of each day of the experiment.

Day d (0 = the date of the first exposure) covers events with time before the day's end.
It is *frozen* once `allowed_lateness` has passed since its end: it then counts only rows
received before day end + lateness, so re-running later never changes it. Other days are
provisional and count everything received up to as-of. The last day ends at as-of, so its
snapshot is the latest result.

Every row enters the snapshots at one index and stays in all later ones (time and
received cutoffs never decrease), so a row's *entry index* is
max(first snapshot whose time cutoff covers it, first snapshot whose received cutoff does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from assay.timefmt import format_rfc3339

MICROS = 1_000_000
HOUR_US = 3600 * MICROS
DAY_US = 24 * HOUR_US
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("timestamps must carry a UTC offset")
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROS + delta.microseconds


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def format_micros(micros: int) -> str:
    """RFC 3339 UTC with microseconds, e.g. 2026-11-20T10:00:00.000000Z."""
    return format_rfc3339(from_micros(micros), "microseconds")


def parse_instant(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_micros(moment)


def date_of(micros: int) -> date:
    return from_micros(micros).date()


def day_start(micros: int) -> int:
    return micros - micros % DAY_US


@dataclass(frozen=True)
class Timeline:
    day0_us: int  # midnight UTC of the first exposure's date
    as_of_us: int
    days: int
    frozen_days: int  # days [0, frozen_days) are final
    lateness_us: int

    @classmethod
    def build(cls, first_exposure_us: int, as_of_us: int, lateness_us: int) -> Timeline:
        if first_exposure_us > as_of_us:
            raise ValueError("the first exposure is after as-of")
        day0 = day_start(first_exposure_us)
        days = (day_start(as_of_us) - day0) // DAY_US + 1
        frozen = min(max((as_of_us - lateness_us - day0) // DAY_US, 0), days)
        return cls(day0, as_of_us, days, frozen, lateness_us)

    @property
    def latest(self) -> int:
        return self.days - 1

    def day(self, index: int) -> date:
        return date_of(self.day0_us + index * DAY_US)

    def is_final(self, index: int) -> bool:
        return index < self.frozen_days

    def time_cutoff(self, index: int) -> int:
        """Inclusive: rows with event time <= this belong to snapshot `index`."""
        return min(self.day0_us + (index + 1) * DAY_US - 1, self.as_of_us)

    def received_cutoff(self, index: int) -> int:
        """Inclusive: rows received <= this belong to snapshot `index`."""
        if self.is_final(index):
            return self.day0_us + (index + 1) * DAY_US + self.lateness_us - 1
        return self.as_of_us
