"""Fault tests: each one breaks a real part (broker, Redis, a service, ingest, the Spark job)
and counts exactly what went in and what came out. Every test starts the instances it kills;
the session-wide Redis, broker and assignment service of the other suites are never touched.

Shared fixtures come from the suites that own them (imported here, not copied)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tests.integration.exposure.conftest import experiment, own_broker, start_exposure

__all__ = ["Tally", "experiment", "own_broker", "start_exposure"]


@dataclass(frozen=True)
class Tally:
    """Event ids that went in (each counted once) against what came out (every copy)."""

    sent: int  # distinct ids that went in
    found: int  # copies that came out, duplicates included
    distinct: int  # distinct ids among them: what is left after de-duplication by event_id
    lost: int  # ids that went in and did not come out
    foreign: int  # ids that came out and never went in

    @classmethod
    def of(cls, sent: Iterable[str], found: Sequence[str]) -> Tally:
        went_in, came_out = set(sent), set(found)
        return cls(len(went_in), len(found), len(came_out), len(went_in - came_out), len(came_out - went_in))

    @property
    def duplicates(self) -> int:
        """Extra copies (at-least-once delivery); de-duplication by event_id removes them."""
        return self.found - self.distinct

    def report(self, name: str) -> Tally:
        print(f"\n{name}: {self.sent} in, {self.found} out ({self.distinct} distinct, {self.duplicates} "
              f"duplicates), {self.lost} lost, {self.foreign} foreign")  # fmt: skip
        return self

    def assert_exact(self) -> None:
        """Every id that went in came out, nothing else did, and one copy of each remains after dedup."""
        assert (self.lost, self.foreign, self.distinct) == (0, 0, self.sent), self
