"""Wait for a condition instead of writing a polling loop with its own deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    condition: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "the condition never held",
) -> T:
    """Call `condition` until it returns something truthy and return that value.

    After `timeout` seconds it raises AssertionError with `message` (a callable is asked only
    then, so it can describe the state at the end) and the last value. The condition is called
    once more at the deadline, so a slow last check still counts. Anything `condition` raises
    propagates at once: an assertion inside it (a process that died) fails without waiting."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:g}s; last value: {value!r})")
        time.sleep(min(interval, remaining))
