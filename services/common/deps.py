"""FastAPI dependencies shared by every service's `deps.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from fastapi import Request

T = TypeVar("T")


def from_app_state(attribute: str, kind: type[T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency returning `app.state.<attribute>`: the objects a service builds once at
    start-up (registry, caches, settings). `kind` only types the result; it is not checked.

    The getter is async although it does no I/O: FastAPI runs plain `def` dependencies in a
    thread pool, which costs more than the lookup itself.
    """

    async def get_from_state(request: Request) -> T:
        return cast(T, getattr(request.app.state, attribute))

    get_from_state.__name__ = f"get_{attribute}"
    return get_from_state
