"""`RedisLink` against a real Redis: pipelined replies in order, error replies, the database
and password of the URL, and the failures a caller must see quickly (no server, a stopped
server, a lost connection), each followed by a clean reconnect."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import uvloop
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from deploy.embedded import RedisServer, free_port
from services.assignment.redis_link import RedisLink, reply_error

T = TypeVar("T")


def run(
    scenario: Callable[[], Awaitable[T]], loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
) -> T:
    """On uvloop, the service's loop (its transports are not `asyncio.Transport` subclasses)."""
    with asyncio.Runner(loop_factory=loop) as runner:
        return runner.run(scenario())  # type: ignore[arg-type]


@pytest.mark.parametrize("loop", [uvloop.new_event_loop, asyncio.new_event_loop], ids=["uvloop", "asyncio"])
def test_a_pipelined_batch_answers_in_order_with_error_replies_in_place(
    redis_server: RedisServer, loop: Callable[[], asyncio.AbstractEventLoop]
) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        link = RedisLink(redis_server.url, timeout=5)
        try:
            writes = [("SET", f"link-test-{i}", f"value-{i}") for i in range(2000)]
            await link.execute(writes)
            reads = [("GET", f"link-test-{i}") for i in range(2000)]
            mixed = [("GET", "link-test-7"), ("HGET", "link-test-7", "field"), ("EVALSHA", "0" * 40, 0)]
            return await link.execute(reads), await link.execute(mixed)
        finally:
            link.close()

    values, mixed = run(scenario, loop)
    assert values == [f"value-{i}" for i in range(2000)]  # 2,000 replies, in many reads, matched in order
    assert mixed[0] == "value-7"
    assert isinstance(mixed[1], ResponseError) and "WRONGTYPE" in str(mixed[1])
    assert isinstance(reply_error(mixed[2]), NoScriptError)


def test_call_raises_an_error_reply_and_the_link_stays_usable(redis_server: RedisServer) -> None:
    async def scenario() -> str:
        link = RedisLink(redis_server.url, timeout=5)
        try:
            with pytest.raises(ResponseError, match="unknown command"):
                await link.call("NO-SUCH-COMMAND")
            return str(await link.call("PING"))
        finally:
            link.close()

    assert run(scenario) == "PONG"


def test_the_database_and_password_come_from_the_url(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    try:
        admin = redis.Redis(port=server.port, decode_responses=True)
        admin.config_set("requirepass", "s3cret-link-pass")
        url = f"redis://:s3cret-link-pass@127.0.0.1:{server.port}/3"

        async def scenario() -> None:
            link = RedisLink(url, timeout=5)
            try:
                await link.call("SET", "where", "db3")
            finally:
                link.close()
            wrong = RedisLink(f"redis://:wrong@127.0.0.1:{server.port}/0", timeout=5)
            with pytest.raises(ResponseError):
                await wrong.connect()
            assert not wrong.connected

        run(scenario)
        on_db3 = redis.Redis(port=server.port, db=3, password="s3cret-link-pass", decode_responses=True)
        assert on_db3.get("where") == "db3"
    finally:
        server.stop()


def test_no_server_fails_at_once() -> None:
    async def scenario() -> None:
        link = RedisLink(f"redis://127.0.0.1:{free_port()}/0", timeout=2)
        with pytest.raises(RedisConnectionError, match="could not connect"):
            await link.execute([("PING",)])

    run(scenario)


def test_a_stopped_server_times_out_and_the_link_reconnects_after(own_redis: RedisServer) -> None:
    assert own_redis.process is not None
    pid = own_redis.process.pid

    async def scenario() -> str:
        link = RedisLink(own_redis.url, timeout=0.3)
        try:
            await link.call("PING")
            os.kill(pid, signal.SIGSTOP)  # the Redis this test started
            try:
                started = asyncio.get_running_loop().time()
                with pytest.raises(RedisTimeoutError):
                    await link.execute([("PING",), ("PING",)])
                assert asyncio.get_running_loop().time() - started < 2
                assert not link.connected  # replies after a timeout cannot be matched: dropped
            finally:
                os.kill(pid, signal.SIGCONT)
            return str(await link.call("PING"))
        finally:
            link.close()

    assert run(scenario) == "PONG"


def test_a_lost_connection_fails_what_waits_and_a_restart_is_reached_again(own_redis: RedisServer) -> None:
    async def scenario() -> str:
        link = RedisLink(own_redis.url, timeout=5)
        try:
            await link.call("PING")
            assert own_redis.process is not None
            os.kill(own_redis.process.pid, signal.SIGSTOP)
            waiting = asyncio.ensure_future(link.execute([("PING",)]))
            await asyncio.sleep(0.1)
            own_redis.kill()  # SIGKILL reaches a stopped process too
            with pytest.raises(RedisConnectionError, match="lost"):
                await waiting
            own_redis.start()
            return str(await link.call("PING"))
        finally:
            link.close()

    assert run(scenario) == "PONG"


def test_an_unreadable_reply_fails_the_batch_and_the_next_one_reconnects(redis_server: RedisServer) -> None:
    """A value that is not UTF-8 cannot be handed over as text: that batch fails as a lost
    connection would (the sticky store then degrades), and the link reconnects after."""

    async def scenario() -> str:
        link = RedisLink(redis_server.url, timeout=5)
        try:
            await link.call("SET", "link-test-latin1", b"caf\xe9")
            with pytest.raises(RedisConnectionError, match="cannot be read"):
                await link.call("GET", "link-test-latin1")
            return str(await link.call("PING"))
        finally:
            link.close()

    assert run(scenario) == "PONG"
