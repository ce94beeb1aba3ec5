"""Sticky assignments in Redis.

One Lua script per unit reads every stored assignment of that unit and, for experiments
where the unit has none yet but is eligible now, stores the hashed variant. Scripts run
atomically, so two concurrent first calls for one unit can never store two variants.
A batch sends one script call per unit in a single pipeline: one round trip. Concurrent
requests share that too: the lookups of every request that reaches Redis in one event-loop
tick go out in one pipeline (`coalesce.TickBatcher`), still one atomic script per unit, in
the order they were asked. The pipelines are written on one lean connection
(`redis_link.RedisLink`) whose replies resume the callers straight from the read, not on
redis-py's client, whose reads cost several passes of a busy event loop.

When Redis fails, the store reports "unavailable" and stays away for `retry_seconds`, so
callers answer by hashing (degraded) at full speed instead of waiting on timeouts.

A stored assignment never changes (the script only writes where nothing is stored, and
nothing rewrites sticky keys), so each process keeps the ones it has seen in a bounded LRU
and asks Redis only about the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from assay.sticky import sticky_key
from redis.exceptions import NoScriptError, RedisError

from services.assignment.coalesce import TickBatcher, settle_in_task
from services.assignment.redis_link import Deliver, Fail, RedisLink, reply_error

log = logging.getLogger(__name__)

# KEYS[1]: the unit's sticky hash. ARGV: experiment, candidate, experiment, candidate, ...
# where an empty candidate means "not eligible now". Returns stored-or-new variant ("" for
# none) and "1" when this call stored it, per experiment.
RESOLVE_SCRIPT = """
local out = {}
for i = 1, #ARGV, 2 do
  local stored = redis.call('HGET', KEYS[1], ARGV[i])
  if stored then
    out[#out + 1] = stored
    out[#out + 1] = '0'
  elseif ARGV[i + 1] ~= '' then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    out[#out + 1] = ARGV[i + 1]
    out[#out + 1] = '1'
  else
    out[#out + 1] = ''
    out[#out + 1] = '0'
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class StickyResult:
    variant: str | None
    newly_stored: bool


# One unit's lookups: (experiment key, candidate variant or None when not eligible now).
UnitLookups = Sequence[tuple[str, str | None]]


class StoredAssignments:
    """Bounded LRU of (unit, experiment) -> variant known to be stored in Redis."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], str] = OrderedDict()

    def get(self, unit_id: str, experiment: str) -> str | None:
        key = (unit_id, experiment)
        variant = self._entries.get(key)
        if variant is not None:
            self._entries.move_to_end(key)
        return variant

    def put(self, unit_id: str, experiment: str, variant: str) -> None:
        if self.capacity <= 0:
            return
        self._entries[(unit_id, experiment)] = variant
        self._entries.move_to_end((unit_id, experiment))
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


# Per unit: one result per lookup (None: unknown, Redis unavailable), and whether any was unknown.
Resolution = tuple[list[list[StickyResult | None]], list[bool]]


class RedisStickyResolver:
    """The service's sticky assignments: batched, atomic per unit, cached, degrading when
    Redis is away (the SDK's `assay.sticky` stores answer one lookup at a time)."""

    def __init__(self, link: RedisLink, *, retry_seconds: float, cache_size: int = 200_000) -> None:
        self.link = link
        self.retry_seconds = retry_seconds
        self.unavailable_until = 0.0
        self.cache = StoredAssignments(cache_size)
        self.batcher: TickBatcher[tuple[str, UnitLookups], list[str]] = TickBatcher(self._start)
        self._sha: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def available(self) -> bool:
        return time.monotonic() >= self.unavailable_until

    async def resolve(self, units: Sequence[tuple[str, UnitLookups]]) -> Resolution:
        """Stored (or newly stored) assignments per unit and lookup, from the cache or Redis."""
        results: list[list[StickyResult | None]] = [[None] * len(lookups) for _, lookups in units]
        misses: list[tuple[int, list[int]]] = []
        for i, (unit_id, lookups) in enumerate(units):
            missing = []
            for j, (experiment, _) in enumerate(lookups):
                cached = self.cache.get(unit_id, experiment)
                if cached is None:
                    missing.append(j)
                else:
                    results[i][j] = StickyResult(cached, False)
            if missing:
                misses.append((i, missing))
        unknown = [False] * len(units)
        if misses and not await self._fill(units, misses, results):
            for i, _ in misses:
                unknown[i] = True
        return results, unknown

    async def _fill(
        self, units: Sequence[tuple[str, UnitLookups]], misses: list[tuple[int, list[int]]],
        results: list[list[StickyResult | None]],
    ) -> bool:  # fmt: skip
        """Ask Redis about the cache misses; False when it is unavailable."""
        if not self.available:
            return False
        asks: list[tuple[str, UnitLookups]] = [
            (units[i][0], [units[i][1][j] for j in missing]) for i, missing in misses
        ]
        try:
            replies = await self.batcher.submit(asks)
        except (RedisError, OSError) as exc:
            if self.available:  # callers that shared the failed round trip log it once
                log.warning("redis unavailable for sticky lookups (%s: %s); hashing for %.1fs",
                            type(exc).__name__, exc, self.retry_seconds)  # fmt: skip
            self.unavailable_until = time.monotonic() + self.retry_seconds
            return False
        for (i, missing), reply in zip(misses, replies, strict=True):
            unit_id, lookups = units[i]
            for j, result in zip(missing, _parse(reply), strict=True):
                results[i][j] = result
                if result.variant is not None:
                    self.cache.put(unit_id, lookups[j][0], result.variant)
        return True

    # --- one batch: written at once when connected, else connect and load the script first ---

    def _start(self, units: list[tuple[str, UnitLookups]], deliver: Deliver, fail: Fail) -> None:
        sha = self._sha
        if sha is None or not self.link.connected:
            self._in_task(units, deliver, fail)
            return

        def settle(replies: list[Any]) -> None:
            error = _first_error(replies)
            if error is None:
                deliver(replies)
            elif isinstance(error, NoScriptError):  # Redis restarted or was flushed
                self._sha = None
                self._in_task(units, deliver, fail)
            else:
                fail(error)

        self.link.send(_commands(units, sha), settle, fail)

    def _in_task(self, units: list[tuple[str, UnitLookups]], deliver: Deliver, fail: Fail) -> None:
        settle_in_task(self._run(units), deliver, fail, self._tasks)

    async def _run(self, units: list[tuple[str, UnitLookups]]) -> list[Any]:
        for attempt in (1, 2):
            if self._sha is None:
                self._sha = str(await self.link.call("SCRIPT", "LOAD", RESOLVE_SCRIPT))
            replies = await self.link.execute(_commands(units, self._sha))
            error = _first_error(replies)
            if error is None:
                return replies
            if not isinstance(error, NoScriptError) or attempt == 2:
                raise error
            self._sha = None
        raise AssertionError("unreachable")


def _commands(units: Sequence[tuple[str, UnitLookups]], sha: str) -> list[tuple[str | int, ...]]:
    return [("EVALSHA", sha, 1, sticky_key(unit_id), *_flatten(lookups)) for unit_id, lookups in units]


def _first_error(replies: list[Any]) -> RedisError | None:
    for reply in replies:
        error = reply_error(reply)
        if error is not None:
            return error
    return None


def _flatten(lookups: UnitLookups) -> list[str]:
    args: list[str] = []
    for experiment, candidate in lookups:
        args.extend((experiment, candidate or ""))
    return args


def _parse(reply: list[str]) -> list[StickyResult]:
    return [StickyResult(reply[i] or None, reply[i + 1] == "1") for i in range(0, len(reply), 2)]
