"""Coalescing: the calls made in one event-loop tick share one batched call.

Concurrent `/v1/assign` requests each need one Redis round trip. Sent one by one, Redis
calls per second grow with requests per second, and each pays the client library's fixed
cost. A `TickBatcher` queues the items every caller submits while the loop runs its ready
callbacks, then hands them all to one batch call (one pipelined round trip) on the next
tick and gives each caller back its own slice of the replies.

The batch call is either a coroutine function (`run_batch(items) -> replies`, run as a
task) or a starter (`start_batch(items, deliver, fail)`) that writes the batch at once and
calls `deliver(replies)` or `fail(error)` later, from whatever reads the replies: the
callers then resume on the next pass of the loop, without a task in between
(`services.assignment.redis_link`).

Nothing is merged or reordered: items keep their order, so a batch function that is
correct for a list of independent items stays correct when the list grows.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar, cast

Item = TypeVar("Item")
Reply = TypeVar("Reply")
Result = TypeVar("Result")
RunBatch = Callable[[list[Item]], Awaitable[Sequence[Reply]]]
StartBatch = Callable[[list[Item], Callable[[Sequence[Reply]], None], Callable[[BaseException], None]], None]


class TickBatcher(Generic[Item, Reply]):
    """`submit(items)` answers the batch call for `items`; submissions made in the same tick
    share one batch call. An exception from that call is raised to every caller in it."""

    def __init__(self, batch: RunBatch[Item, Reply] | StartBatch[Item, Reply]) -> None:
        if inspect.iscoroutinefunction(batch):
            self._start: StartBatch[Item, Reply] = self._as_task(cast("RunBatch[Item, Reply]", batch))
        else:
            self._start = cast("StartBatch[Item, Reply]", batch)
        self._pending: list[tuple[list[Item], asyncio.Future[Sequence[Reply]]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.submissions = 0

    async def submit(self, items: list[Item]) -> Sequence[Reply]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Sequence[Reply]] = loop.create_future()
        if not self._pending:
            # Runs on the next tick, after every callback ready now: whoever submits before
            # then joins this batch.
            loop.call_soon(self._flush)
        self._pending.append((items, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self.batches += 1
        self.submissions += len(pending)
        settled = False

        def deliver(replies: Sequence[Reply]) -> None:
            nonlocal settled
            if settled:
                return
            settled = True
            start = 0
            for items, future in pending:
                end = start + len(items)
                if not future.done():  # a caller that gave up (client went away) is skipped
                    future.set_result(replies[start:end])
                start = end

        def fail(error: BaseException) -> None:  # handed to the callers, who decide
            nonlocal settled
            if settled:
                return
            settled = True
            for _, future in pending:
                if not future.done():
                    future.set_exception(error)

        try:
            self._start([item for items, _ in pending for item in items], deliver, fail)
        except Exception as exc:
            fail(exc)

    def _as_task(self, run_batch: RunBatch[Item, Reply]) -> StartBatch[Item, Reply]:
        def start(
            items: list[Item], deliver: Callable[[Sequence[Reply]], None], fail: Callable[[BaseException], None]
        ) -> None:
            settle_in_task(run_batch(items), deliver, fail, self._tasks)

        return start


def settle_in_task(
    work: Awaitable[Result], deliver: Callable[[Result], None], fail: Callable[[BaseException], None],
    running: set[asyncio.Task[None]],
) -> None:  # fmt: skip
    """Await `work` in a task of its own (kept in `running` until done), then `deliver` its
    result or `fail` with its exception: how a starter hands a batch to a coroutine."""

    async def run() -> None:
        try:
            result = await work
        except Exception as exc:
            fail(exc)
            return
        deliver(result)

    task = asyncio.get_running_loop().create_task(run())
    running.add(task)
    task.add_done_callback(running.discard)
