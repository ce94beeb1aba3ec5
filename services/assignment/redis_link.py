"""One lean, pipelined Redis connection for the sticky lookups on `/v1/assign`'s hot path.

redis-py's asyncio client reads replies inside the caller's task: a pipeline takes a pool
connection, writes, then awaits each read, and every await that finds no data yet costs a
pass of the event loop. With the loop saturated by requests (each pass a few milliseconds),
a lookup that needed one Redis round trip of about 0.1 ms measured 11 ms inside redis-py
(p50, 32 connections; docs/benchmarks.md). Here commands are written straight to one
connection and each batch's replies are handed to a callback from `data_received`, in the
pass that reads them: the callers resume on the next pass.

Replies arrive in the order the commands were written (one connection), so the link keeps a
queue of what it waits for. A batch not answered within the timeout fails, and the
connection is closed with everything still waiting on it (their replies could no longer be
matched); the next batch connects again. Errors are redis-py's exception classes, so
callers handle this link and redis-py alike. Everything else in the service uses redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Deliver = Callable[[list[Any]], None]
Fail = Callable[[BaseException], None]
Command = Sequence[str | int | bytes]


def reply_error(reply: Any) -> ResponseError | None:
    """The error a reply carries (NOSCRIPT as redis-py's NoScriptError), else None."""
    if not isinstance(reply, ResponseError):
        return None
    message = str(reply)
    return NoScriptError(message) if message.startswith("NOSCRIPT") else reply


class _Waiting:
    __slots__ = ("deliver", "expected", "fail", "replies", "timer")

    def __init__(self, expected: int, deliver: Deliver, fail: Fail) -> None:
        self.expected = expected
        self.replies: list[Any] = []
        self.deliver, self.fail = deliver, fail
        self.timer: asyncio.TimerHandle | None = None


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", replyError=ResponseError)
        self.waiting: deque[_Waiting] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, but acts as one

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while self.waiting:
            try:
                reply = self.reader.gets()
            except (hiredis.ProtocolError, UnicodeDecodeError) as exc:  # not RESP, or not UTF-8
                self.close(RedisConnectionError(f"Redis sent a reply that cannot be read: {exc}"))
                return
            if reply is False:
                return
            head = self.waiting[0]
            head.replies.append(reply)
            if len(head.replies) == head.expected:
                self.waiting.popleft()
                if head.timer is not None:
                    head.timer.cancel()
                head.deliver(head.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(RedisConnectionError(f"the Redis connection was lost: {exc or 'closed by the server'}"))

    def send(self, commands: Sequence[Command], waiting: _Waiting) -> None:
        assert self.transport is not None
        self.waiting.append(waiting)
        # (hiredis's stub types the argument as a 1-tuple; it takes any number of parts)
        self.transport.write(b"".join(hiredis.pack_command(tuple(command)) for command in commands))  # type: ignore[arg-type]

    def close(self, error: BaseException) -> None:
        """Fail everything still waiting and drop the connection (idempotent)."""
        self.closed = True
        waiting, self.waiting = self.waiting, deque()
        if self.transport is not None:
            self.transport.abort()
        for item in waiting:
            if item.timer is not None:
                item.timer.cancel()
            item.fail(error)


class RedisLink:
    """A pipelined connection to the Redis of `url` (redis://, rediss:// or unix://; the
    database, user and password come from the URL), each batch failing after `timeout`
    seconds; also the connect timeout."""

    def __init__(self, url: str, timeout: float) -> None:
        self.options = parse_url(url)
        self.timeout = timeout
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.closed

    async def connect(self) -> None:
        """Connect (and authenticate, select the database) unless connected; raises
        redis-py's ConnectionError or TimeoutError."""
        async with self._connecting:
            if self.connected:
                return
            try:
                connection = await asyncio.wait_for(self._open(), self.timeout)
            except TimeoutError as exc:
                raise RedisTimeoutError("timed out connecting to Redis") from exc
            except OSError as exc:
                raise RedisConnectionError(f"could not connect to Redis: {exc}") from exc
            self._connection = connection
            try:
                for command in self._handshake():
                    await self.call(*command)
            except Exception:
                connection.close(RedisConnectionError("the Redis handshake failed"))
                raise

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        options = self.options
        if "path" in options:
            _, connection = await loop.create_unix_connection(_Connection, options["path"])
        else:
            tls = ssl.create_default_context() if options.get("connection_class") is SSLConnection else None
            host, port = options.get("host", "localhost"), int(options.get("port", 6379))
            _, connection = await loop.create_connection(_Connection, host, port, ssl=tls)
        return connection

    def _handshake(self) -> list[tuple[str, ...]]:
        commands: list[tuple[str, ...]] = []
        password, username = self.options.get("password"), self.options.get("username")
        if password:
            commands.append(("AUTH", username, password) if username else ("AUTH", password))
        if int(self.options.get("db", 0) or 0):
            commands.append(("SELECT", str(self.options["db"])))
        return commands

    def send(self, commands: Sequence[Command], deliver: Deliver, fail: Fail) -> None:
        """Write `commands` now; `deliver(replies)` is called from the read that completes
        them (error replies are in the list as ResponseError), or `fail(error)` once.
        Requires `connected`."""
        connection = self._connection
        if connection is None or connection.closed:
            fail(RedisConnectionError("not connected to Redis"))
            return
        waiting = _Waiting(len(commands), deliver, fail)
        waiting.timer = asyncio.get_running_loop().call_later(self.timeout, self._expire, connection, waiting)
        connection.send(commands, waiting)

    @staticmethod
    def _expire(connection: _Connection, waiting: _Waiting) -> None:
        if waiting in connection.waiting:
            # Replies after this one could no longer be matched to their commands.
            connection.close(RedisTimeoutError("Redis did not answer within the timeout"))

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """`send`, awaited (connecting first if needed)."""
        if not self.connected:
            await self.connect()
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def deliver(replies: list[Any]) -> None:
            if not future.done():
                future.set_result(replies)

        def fail(error: BaseException) -> None:
            if not future.done():
                future.set_exception(error)

        self.send(commands, deliver, fail)
        return await future

    async def call(self, *command: str | int | bytes) -> Any:
        """One command's reply; an error reply is raised."""
        (reply,) = await self.execute([command])
        error = reply_error(reply)
        if error is not None:
            raise error
        return reply

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close(RedisConnectionError("the Redis link was closed"))
