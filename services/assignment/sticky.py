"""Sticky assignments in Redis.

One Lua script per unit reads every stored assignment of that unit and, for experiments
where the unit has none yet but is eligible now, stores the hashed variant. Scripts run
atomically, so two concurrent first calls for one unit can never store two variants.
A batch sends one script call per unit in a single pipeline: one round trip.

When Redis fails, the store reports "unavailable" and stays away for `retry_seconds`, so
callers answer by hashing (degraded) at full speed instead of waiting on timeouts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from services.assignment.keys import sticky_key

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


class StickyStore:
    def __init__(self, redis: aioredis.Redis, *, retry_seconds: float) -> None:
        self.redis = redis
        self.retry_seconds = retry_seconds
        self.unavailable_until = 0.0
        self._sha: str | None = None

    @property
    def available(self) -> bool:
        return time.monotonic() >= self.unavailable_until

    async def resolve(self, units: Sequence[tuple[str, UnitLookups]]) -> list[list[StickyResult]] | None:
        """Stored (or newly stored) assignments per unit; None when Redis is unavailable."""
        if not self.available:
            return None
        try:
            replies = await self._run(units)
        except (RedisError, OSError):
            self.unavailable_until = time.monotonic() + self.retry_seconds
            return None
        return [_parse(reply) for reply in replies]

    async def _run(self, units: Sequence[tuple[str, UnitLookups]]) -> list[list[str]]:
        if self._sha is None:
            self._sha = await self.redis.script_load(RESOLVE_SCRIPT)
        try:
            return await self._evaluate(units, self._sha)
        except NoScriptError:
            # Redis restarted (or was flushed) since we loaded the script.
            self._sha = await self.redis.script_load(RESOLVE_SCRIPT)
            return await self._evaluate(units, self._sha)

    async def _evaluate(self, units: Sequence[tuple[str, UnitLookups]], sha: str) -> list[list[str]]:
        calls = [(sticky_key(unit_id), _flatten(lookups)) for unit_id, lookups in units]
        if len(calls) == 1:
            key, args = calls[0]
            return [await self.redis.evalsha(sha, 1, key, *args)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, args in calls:
                pipe.evalsha(sha, 1, key, *args)
            replies: list[list[str]] = await pipe.execute()
            return replies


def _flatten(lookups: UnitLookups) -> list[str]:
    args: list[str] = []
    for experiment, candidate in lookups:
        args.extend((experiment, candidate or ""))
    return args


def _parse(reply: list[str]) -> list[StickyResult]:
    return [StickyResult(reply[i] or None, reply[i + 1] == "1") for i in range(0, len(reply), 2)]
