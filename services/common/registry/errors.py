"""The registry's expected failures, as data a handler turns into an HTTP answer: readers
need the not-found case, the assignment service's write rules need the rest."""

from __future__ import annotations


class RegistryError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def not_found(key: str) -> RegistryError:
    return RegistryError(404, f"experiment '{key}' does not exist")
