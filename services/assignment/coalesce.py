"""Coalescing: the calls made in one event-loop tick share one batched call.

Concurrent `/v1/assign` requests each need one Redis round trip. Sent one by one, Redis
calls per second grow with requests per second, and each pays the client library's fixed
cost. A `TickBatcher` queues the items every caller submits while the loop runs its ready
callbacks, then hands them all to one `run_batch` call (one pipelined round trip) on the
next tick and gives each caller back its own slice of the replies.

Nothing is merged or reordered: items keep their order, so a batch function that is
correct for a list of independent items stays correct when the list grows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Reply = TypeVar("Reply")
RunBatch = Callable[[list[Item]], Awaitable[Sequence[Reply]]]


class TickBatcher(Generic[Item, Reply]):
    """`submit(items)` answers `run_batch(items)`; submissions made in the same tick share
    one `run_batch` call. An exception from that call is raised to every caller in it."""

    def __init__(self, run_batch: RunBatch[Item, Reply]) -> None:
        self._run_batch = run_batch
        self._pending: list[tuple[list[Item], asyncio.Future[Sequence[Reply]]]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.submissions = 0

    async def submit(self, items: list[Item]) -> Sequence[Reply]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Sequence[Reply]] = loop.create_future()
        if not self._pending:
            # The task's first step runs on the next tick, after every callback ready now:
            # whoever submits before then joins this batch.
            flush = loop.create_task(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        self._pending.append((items, future))
        return await future

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self.batches += 1
        self.submissions += len(pending)
        try:
            replies = await self._run_batch([item for items, _ in pending for item in items])
        except asyncio.CancelledError:
            for _, future in pending:
                future.cancel()
            raise
        except Exception as exc:  # handed to the callers, who decide
            for _, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for items, future in pending:
            end = start + len(items)
            if not future.done():  # a caller that gave up (client went away) is skipped
                future.set_result(replies[start:end])
            start = end
