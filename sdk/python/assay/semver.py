"""Semantic version parsing and comparison (semver.org 2.0 precedence rules).

Hand-written because the SDK may only depend on httpx, mmh3 and pydantic; no user-given
regular expressions are ever evaluated.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MAX_VERSION_LENGTH = 128


@dataclass(frozen=True, order=False)
class SemVer:
    core: tuple[int, int, int]
    prerelease: tuple[str, ...]

    def sort_key(self) -> tuple[tuple[int, int, int], int, tuple[tuple[int, int, str], ...]]:
        # A release ranks above any of its pre-releases; numeric identifiers rank below
        # alphanumeric ones and compare numerically (semver.org, rule 11).
        if not self.prerelease:
            return (self.core, 1, ())
        parts = tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in self.prerelease)
        return (self.core, 0, parts)


def parse_semver(text: str) -> SemVer | None:
    """Parse '1', '1.2', '1.2.3', 'v1.2.3-beta.1+build'; None when it is not a version."""
    if not isinstance(text, str) or not text or len(text) > MAX_VERSION_LENGTH:
        return None
    text = text.strip()
    if text[:1] in ("v", "V"):
        text = text[1:]
    text = text.split("+", 1)[0]
    core_text, dash, pre_text = text.partition("-")
    if dash and not pre_text:
        return None
    numbers = core_text.split(".")
    if not 1 <= len(numbers) <= 3 or not all(n.isdigit() and n.isascii() for n in numbers):
        return None
    core = tuple(int(n) for n in numbers) + (0,) * (3 - len(numbers))
    prerelease: tuple[str, ...] = ()
    if pre_text:
        prerelease = tuple(pre_text.split("."))
        if not all(p and (p.isalnum() or "-" in p) and p.isascii() for p in prerelease):
            return None
    return SemVer(core=(core[0], core[1], core[2]), prerelease=prerelease)


def compare_semver(left: str, right: str) -> int | None:
    """-1, 0 or 1 as left <, ==, > right; None when either side is not a version."""
    a, b = parse_semver(left), parse_semver(right)
    if a is None or b is None:
        return None
    ka, kb = a.sort_key(), b.sort_key()
    return (ka > kb) - (ka < kb)


SemverKey = tuple[tuple[int, int, int], int, tuple[tuple[int, int, str], ...]]
REMEMBERED_VERDICTS = 4096  # per semver condition
_COMPARISONS: dict[str, Callable[[SemverKey, SemverKey], bool]] = {
    "semver_eq": operator.eq, "semver_neq": operator.ne, "semver_gt": operator.gt,
    "semver_gte": operator.ge, "semver_lt": operator.lt, "semver_lte": operator.le,
}  # fmt: skip


@lru_cache(maxsize=8192)
def semver_key(text: str) -> SemverKey | None:
    parsed = parse_semver(text)
    return None if parsed is None else parsed.sort_key()


class SemverVerdicts:
    """Whether a value satisfies one semver condition (`semver_gte 2.0.0`), as `compare_semver`
    decides it; apps report few distinct versions, so verdicts are remembered per plain string
    in `known`, which fast paths may read directly."""

    def __init__(self, op: str, expected: str) -> None:
        self.compare, self.expected = _COMPARISONS[op], semver_key(expected)
        self.known: dict[str, bool] = {}

    def __call__(self, actual: Any) -> bool:
        if not isinstance(actual, str):
            return False
        key = semver_key(actual)
        verdict = key is not None and self.expected is not None and self.compare(key, self.expected)
        if actual.__class__ is str:
            if len(self.known) >= REMEMBERED_VERDICTS:
                self.known.clear()
            self.known[actual] = verdict
        return verdict
