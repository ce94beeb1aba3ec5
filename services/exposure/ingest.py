"""One ingestion request from body to answer, shared by the exposure and event routes."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from assay.timefmt import format_rfc3339, utc_now
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from services.common.registry.cache import ConfigCache, ConfigSnapshot
from services.exposure.delivery import Delivery, SpoolUnavailable
from services.exposure.envelope import check_content_type, items_of, parse_json
from services.exposure.metrics import ExposureMetrics
from services.exposure.settings import ExposureSettings
from services.exposure.spool import SpoolFull
from services.exposure.timestamps import TimeWindow
from services.exposure.validation import (
    ItemContext,
    Kind,
    Outcome,
    RegistryIndex,
    needs_fresh_registry,
    validate_items,
)

RETRY_AFTER_SECONDS = "5"


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS})


@dataclass
class ItemIntake:
    """A request's items in, accepted ones handed to delivery (broker or spool): checks them
    against the cached registry, reloading it once when an item names something unknown."""

    settings: ExposureSettings
    cache: ConfigCache
    delivery: Delivery
    metrics: ExposureMetrics

    _indexed: tuple[ConfigSnapshot, RegistryIndex] | None = field(default=None, init=False, repr=False)

    def _registry(self, snapshot: ConfigSnapshot) -> RegistryIndex:
        if self._indexed is None or self._indexed[0] is not snapshot:
            self._indexed = (snapshot, RegistryIndex(snapshot.experiments))
        return self._indexed[1]

    def _context(self, snapshot: ConfigSnapshot) -> ItemContext:
        now = utc_now()
        window = TimeWindow.at(
            now, max_future_seconds=self.settings.max_future_seconds, horizon_days=self.settings.horizon_days
        )
        return ItemContext(window, format_rfc3339(now), self._registry(snapshot))

    async def validate(self, kind: Kind, items: list[Any]) -> Outcome:
        snapshot = self.cache.snapshot
        outcome = validate_items(kind, items, self._context(snapshot))
        if kind == "exposure" and needs_fresh_registry(outcome):
            # The experiment may have been created a moment ago: look once for a newer registry
            # (the refresher may also have swapped in a newer snapshot meanwhile).
            with contextlib.suppress(RedisError, OSError):
                await self.cache.reload_if_changed()
            if self.cache.snapshot is not snapshot:
                outcome = validate_items(kind, items, self._context(self.cache.snapshot))
        return outcome

    async def ingest(self, kind: Kind, request: Request) -> Response:
        if not self.cache.loaded:
            return _unavailable("the experiment registry has not been loaded from Redis yet; retry shortly")
        check_content_type(request)
        items = items_of(parse_json(await request.body()), kind, self.settings.max_items)
        outcome = await self.validate(kind, items)
        try:
            await self.delivery.deliver(kind, outcome.entries)
        except SpoolFull:
            return _unavailable(
                "the broker is unreachable and the local spool is full, so this request was not stored "
                f"in full; retry it after {RETRY_AFTER_SECONDS} s (items resent with the same event_id "
                "are deduplicated downstream)"
            )
        except SpoolUnavailable:
            return _unavailable("the broker is unreachable and the local spool could not be written; retry")
        self._count(kind, outcome)
        body = {"accepted": len(outcome.entries),
                "rejected": [{"index": r.index, "error": r.error} for r in outcome.rejected]}  # fmt: skip
        return Response(orjson.dumps(body), status_code=202, media_type="application/json")

    def _count(self, kind: Kind, outcome: Outcome) -> None:
        if outcome.entries:
            self.metrics.accepted[kind].inc(len(outcome.entries))
        for reason, count in Counter(r.reason for r in outcome.rejected).items():
            self.metrics.rejected[kind, reason].inc(count)
