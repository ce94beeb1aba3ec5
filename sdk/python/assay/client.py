"""`assay.Client`: get variants and log exposures and events from a product app.

Nothing here raises into app code: failures return the default variant and are counted in
`client.stats`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import httpx

from assay.batching import EventSender, RetryPolicy
from assay.dimensions import dimension_attributes
from assay.evaluation import EXPOSED_REASONS, Assignment
from assay.local import ConfigPoller, decide_locally
from assay.sticky import StickyStore
from assay.timefmt import utc_now_rfc3339

log = logging.getLogger("assay.sdk")
NO_DIMENSIONS: tuple[str, ...] = ()


def usable_attributes(attributes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """NaN and infinities mean "unknown" (pandas writes a missing number as NaN), and JSON cannot
    carry them: they are treated as absent, in remote and local mode alike, so targeting and
    slicing see a missing attribute rather than a request that fails."""
    if not attributes:
        return attributes
    if all(not isinstance(value, float) or math.isfinite(value) for value in attributes.values()):
        return attributes  # numpy's float64 is a float too
    return {k: v for k, v in attributes.items() if not (isinstance(v, float) and not math.isfinite(v))}


COUNTERS = ("assign_errors", "exposures_logged", "exposures_deduplicated", "invalid")


class ExposureLog:
    """Remembers which (unit, experiment, variant) were logged, bounded (LRU)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, unit_id: str, experiment: str, variant: str) -> bool:
        key = (unit_id, experiment, variant)
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
            return True


class Counters:
    """Thread-safe counters for `Client.stats`."""

    def __init__(self) -> None:
        self._values = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class Client:
    def __init__(
        self, sdk_key: str, assignment_url: str = "http://127.0.0.1:8001",
        exposure_url: str = "http://127.0.0.1:8002", mode: Literal["remote", "local"] = "remote", *,
        timeout: float = 0.5, sticky_store: StickyStore | None = None, config_poll_interval: float = 30.0,
        batch_size: int = 100, flush_interval: float = 1.0, max_queue: int = 10_000,
        retry: RetryPolicy | None = None, exposure_cache_size: int = 100_000,
    ) -> None:  # fmt: skip
        if mode not in ("remote", "local"):
            raise ValueError("mode must be 'remote' or 'local'")
        headers = {"Authorization": f"Bearer {sdk_key}", "User-Agent": "assay-python/0.1.0"}
        self.mode = mode
        self.sticky_store = sticky_store
        self._assign_http = httpx.Client(base_url=assignment_url, headers=headers, timeout=timeout)
        self._events_http = httpx.Client(base_url=exposure_url, headers=headers, timeout=max(timeout, 5.0))
        self._sender = EventSender(self._events_http, batch_size=batch_size, flush_interval=flush_interval,
                                   max_queue=max_queue, retry=retry)  # fmt: skip
        self._exposures = ExposureLog(exposure_cache_size)
        self._counters = Counters()
        self._poller: ConfigPoller | None = None
        if mode == "local":
            self._poller = ConfigPoller(self._assign_http, config_poll_interval)
            self._poller.refresh()
            self._poller.start()

    @property
    def stats(self) -> dict[str, int]:
        return {**self._sender.stats.snapshot(), **self._counters.snapshot()}

    def get_variant(
        self, experiment: str, unit_id: str, attributes: Mapping[str, Any] | None = None,
        default: str | None = None,
    ) -> str | None:  # fmt: skip
        """The unit's variant (logging the exposure once), or `default` when not enrolled
        or when the assignment service cannot answer within the timeout.

        The exposure carries the unit's values of the experiment's `dimensions` (only those,
        as strings; see `assay.dimensions`), which its results are sliced by."""
        try:
            attributes = usable_attributes(attributes)
            decision, dimensions = self._decide(experiment, unit_id, attributes)
        except Exception as exc:
            self._counters.add("assign_errors")
            log.warning("assay assignment failed (%s); serving the default", type(exc).__name__)
            return default
        if decision.variant is None:
            return default
        if decision.reason in EXPOSED_REASONS:
            self._log_exposure(experiment, unit_id, decision.variant, dimensions, attributes)
        return decision.variant

    def track(
        self, name: str, unit_id: str, value: float | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> bool:  # fmt: skip
        """Queue a product event; False (counted) when it is invalid or the queue is full."""
        try:
            if value is not None and not math.isfinite(float(value)):
                raise ValueError("value must be finite")
            event = {
                "event_id": str(uuid.uuid4()), "name": name, "unit_id": unit_id,
                "timestamp": utc_now_rfc3339(), "value": value, "properties": dict(properties or {}),
            }  # fmt: skip
            json.dumps(event, allow_nan=False)
        except (TypeError, ValueError):
            self._counters.add("invalid")
            return False
        return self._sender.enqueue("events", event)

    def refresh_config(self) -> bool:
        """Local mode: poll `/v1/config` now; True when the config changed."""
        return self._poller.refresh() if self._poller is not None else False

    @property
    def config_etag(self) -> str | None:
        """Local mode: the ETag of the config in use."""
        return self._poller.etag if self._poller is not None else None

    def flush(self, timeout: float | None = 30.0) -> bool:
        return self._sender.flush(timeout)

    def close(self) -> None:
        if self._poller is not None:
            self._poller.stop()
        self._sender.close()
        self._assign_http.close()
        self._events_http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _decide(
        self, experiment: str, unit_id: str, attributes: Mapping[str, Any] | None
    ) -> tuple[Assignment, Sequence[str]]:
        """The assignment, and the experiment's dimensions: from the config snapshot in local
        mode; in remote mode from the answer, which names them for an exposed unit."""
        if self._poller is not None:
            experiments = self._poller.experiments
            config = experiments.get(experiment)
            decision = decide_locally(experiments, experiment, unit_id, attributes, self.sticky_store)
            return decision, config.dimensions if config is not None else NO_DIMENSIONS
        body = {"unit_id": unit_id, "attributes": dict(attributes or {}), "experiments": [experiment]}
        response = self._assign_http.post("/v1/assign", json=body)
        response.raise_for_status()
        answer = response.json()["assignments"][experiment]
        dimensions = answer.get("dimensions")  # present only for an exposed unit of a sliced experiment
        if not isinstance(dimensions, list):
            dimensions = NO_DIMENSIONS
        return Assignment(answer["variant"], answer["reason"]), dimensions

    def _log_exposure(
        self, experiment: str, unit_id: str, variant: str, dimensions: Sequence[str],
        attributes: Mapping[str, Any] | None,
    ) -> None:  # fmt: skip
        if not self._exposures.first_time(unit_id, experiment, variant):
            self._counters.add("exposures_deduplicated")
            return
        exposure: dict[str, Any] = {"event_id": str(uuid.uuid4()), "experiment": experiment, "variant": variant,
                                    "unit_id": unit_id, "timestamp": utc_now_rfc3339()}  # fmt: skip
        carried = dimension_attributes(dimensions, attributes)
        if carried:
            exposure["attributes"] = carried
        if self._sender.enqueue("exposures", exposure):
            self._counters.add("exposures_logged")
