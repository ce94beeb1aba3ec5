"""`TickBatcher`: submissions made in one event-loop tick share one batch call, each caller
gets its own replies back, and a failure reaches every caller of that batch."""

from __future__ import annotations

import asyncio

import pytest

from services.assignment.coalesce import TickBatcher


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail

    async def run(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        await asyncio.sleep(0)
        if self.fail:
            raise ConnectionError("store away")
        return [item * 10 for item in items]


def test_one_tick_shares_one_call_and_each_caller_gets_its_slice() -> None:
    async def scenario() -> tuple[list[list[int]], list[list[int]], TickBatcher[int, int]]:
        recorder = Recorder()
        batcher: TickBatcher[int, int] = TickBatcher(recorder.run)
        replies = await asyncio.gather(batcher.submit([1, 2]), batcher.submit([3]), batcher.submit([4, 5, 6]))
        return recorder.calls, [list(r) for r in replies], batcher

    calls, replies, batcher = asyncio.run(scenario())
    assert calls == [[1, 2, 3, 4, 5, 6]]
    assert replies == [[10, 20], [30], [40, 50, 60]]
    assert (batcher.batches, batcher.submissions) == (1, 3)


def test_later_ticks_make_new_batches() -> None:
    async def scenario() -> list[list[int]]:
        recorder = Recorder()
        batcher: TickBatcher[int, int] = TickBatcher(recorder.run)
        await batcher.submit([1])
        await asyncio.gather(batcher.submit([2]), batcher.submit([3]))
        return recorder.calls

    assert asyncio.run(scenario()) == [[1], [2, 3]]


def test_a_failed_batch_fails_every_caller_in_it() -> None:
    async def scenario() -> list[BaseException | list[int]]:
        batcher: TickBatcher[int, int] = TickBatcher(Recorder(fail=True).run)
        results = await asyncio.gather(batcher.submit([1]), batcher.submit([2]), return_exceptions=True)
        return [r if isinstance(r, BaseException) else list(r) for r in results]

    results = asyncio.run(scenario())
    assert all(isinstance(r, ConnectionError) for r in results)


def test_a_caller_that_gives_up_does_not_disturb_the_others() -> None:
    async def scenario() -> list[int]:
        batcher: TickBatcher[int, int] = TickBatcher(Recorder().run)
        abandoned = asyncio.ensure_future(batcher.submit([1]))
        kept = asyncio.ensure_future(batcher.submit([2]))
        await asyncio.sleep(0)  # both have submitted; the batch has not been answered yet
        abandoned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        return list(await kept)

    assert asyncio.run(scenario()) == [20]
