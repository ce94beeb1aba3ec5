"""Timed steps: each prints its duration as it ends, and the run ends with a table of them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Timings:
    started: float = field(default_factory=time.monotonic)
    steps: list[tuple[str, float, str]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"[compose-test] {name} ...", flush=True)
        began, outcome = time.monotonic(), "failed"
        try:
            yield
            outcome = "ok"
        finally:
            seconds = time.monotonic() - began
            self.steps.append((name, seconds, outcome))
            print(f"[compose-test] {name}: {outcome} in {seconds:.1f} s", flush=True)

    def run(self, name: str, action: Callable[[], T]) -> T:
        with self.step(name):
            return action()

    def table(self) -> str:
        lines = [f"  {seconds:7.1f} s  {outcome:<6}  {name}" for name, seconds, outcome in self.steps]
        lines.append(f"  {time.monotonic() - self.started:7.1f} s  total")
        return "\n".join(lines)
