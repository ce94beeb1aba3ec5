"""Fault tests: each one breaks a real part (broker, Redis, a service, ingest, the Spark job)
and counts exactly what went in and what came out. Every test starts the instances it kills;
the session-wide Redis, broker and assignment service of the other suites are never touched.

Shared fixtures (`own_broker`, `own_redis`, `start_exposure`, `experiment`) come from tests/support."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import httpx

from tests.support.eventually import eventually
from tests.support.services import SDK_KEY, client_for, exposure


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


class Poster(threading.Thread):
    """Posts batches of exposures back to back until stopped (or until `total` items were
    sent); remembers every accepted id."""

    def __init__(self, base_url: str, experiment: str, batch: int = 50, total: int | None = None) -> None:
        super().__init__(daemon=True)
        self.client = client_for(base_url, SDK_KEY)
        self.client.timeout = httpx.Timeout(30.0)
        self.experiment = experiment
        self.batch = batch
        self.total = total
        self.accepted: list[str] = []
        self.statuses: Counter[int] = Counter()
        self._stop_requested = threading.Event()
        # A lock alone would not do for pausing: the poster re-takes it at once after each
        # request, and Python locks are not fair, so a waiter could starve until the end.
        self._turn = threading.Condition()
        self._holding = False
        self._in_request = False
        self._sent = 0

    def post_once(self) -> None:
        size = self.batch if self.total is None else min(self.batch, self.total - self._sent)
        items = [exposure(self.experiment, f"stream-{self._sent + i}") for i in range(size)]
        self._sent += size
        response = self.client.post("/v1/exposures", json={"exposures": items})
        self.statuses[response.status_code] += 1
        if response.status_code == 202:
            refused = {r["index"] for r in response.json()["rejected"]}
            self.accepted.extend(item["event_id"] for i, item in enumerate(items) if i not in refused)

    @property
    def sent(self) -> int:
        return self._sent

    def run(self) -> None:
        while True:
            with self._turn:
                self._turn.wait_for(lambda: not self._holding or self._stop_requested.is_set())
                if self._stop_requested.is_set() or (self.total is not None and self._sent >= self.total):
                    return
                self._in_request = True
            try:
                self.post_once()
            finally:
                with self._turn:
                    self._in_request = False
                    self._turn.notify_all()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No request in flight inside the block, and none starts until it ends."""
        with self._turn:
            self._holding = True
            self._turn.wait_for(lambda: not self._in_request)
        try:
            yield
        finally:
            with self._turn:
                self._holding = False
                self._turn.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` items were accepted; fails at once if the poster stopped short of them."""

        def enough() -> bool:
            if len(self.accepted) >= count:
                return True
            assert self.is_alive(), (len(self.accepted), self.statuses)
            return False

        eventually(enough, timeout, interval=0.02, message=lambda: str((len(self.accepted), self.statuses)))

    def finish(self) -> list[str]:
        self._stop_requested.set()
        with self._turn:
            self._turn.notify_all()
        self.join(timeout=60)
        self.client.close()
        return list(self.accepted)
