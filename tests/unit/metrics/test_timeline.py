"""Snapshot cutoffs: which days are frozen, and what each snapshot may see."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.metrics.job.timeline import (
    DAY_US,
    HOUR_US,
    Timeline,
    format_micros,
    parse_instant,
    to_micros,
)


def at(text: str) -> int:
    return parse_instant(text)


def test_days_run_from_the_first_exposure_date_to_as_of() -> None:
    timeline = Timeline.build(at("2026-11-20T15:00:00Z"), at("2026-11-25T06:00:00Z"), 72 * HOUR_US)
    assert timeline.days == 6
    assert timeline.day(0) == date(2026, 11, 20) and timeline.day(timeline.latest) == date(2026, 11, 25)
    # Nov 20 ends Nov 21 00:00; +72 h = Nov 24 00:00 <= as-of, and Nov 21 + 72 h = Nov 25 00:00 too.
    assert timeline.frozen_days == 2
    assert [timeline.is_final(i) for i in range(6)] == [True, True, False, False, False, False]


def test_cutoffs_of_frozen_provisional_and_last_snapshots() -> None:
    as_of = at("2026-11-25T06:00:00Z")
    timeline = Timeline.build(at("2026-11-20T15:00:00Z"), as_of, 72 * HOUR_US)
    assert timeline.time_cutoff(0) == at("2026-11-21T00:00:00Z") - 1
    assert timeline.received_cutoff(0) == at("2026-11-24T00:00:00Z") - 1
    assert timeline.received_cutoff(2) == as_of  # provisional: everything received so far
    assert timeline.time_cutoff(timeline.latest) == as_of  # the last day ends at as-of


def test_zero_lateness_freezes_every_finished_day() -> None:
    timeline = Timeline.build(at("2026-11-20T15:00:00Z"), at("2026-11-25T06:00:00Z"), 0)
    assert timeline.frozen_days == timeline.days - 1


def test_first_exposure_after_as_of_is_an_error() -> None:
    with pytest.raises(ValueError, match="after as-of"):
        Timeline.build(at("2026-11-26T00:00:00Z"), at("2026-11-25T00:00:00Z"), 0)


def test_micros_round_trip() -> None:
    moment = datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC)
    assert format_micros(to_micros(moment)) == "2026-11-20T10:00:00.123456Z"
    assert to_micros(datetime(1970, 1, 2, tzinfo=UTC)) == DAY_US
    assert at("2026-11-20T12:00:00+02:00") == at("2026-11-20T10:00:00Z")
