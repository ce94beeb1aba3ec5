# Types of the optional C module built from _speedups.c (see assay.codegen.c_decide).
from collections.abc import Callable, Mapping
from typing import Any

IN_STR: int
SEMVER: int

class Decider:
    def __init__(
        self,
        conditions: tuple[tuple[int, str, Any], ...],
        prefix: str,
        hash: Callable[..., int],
        answers: tuple[Any, ...],
        not_targeted: Any,
        fallback: Callable[[str, Mapping[str, Any]], Any],
    ) -> None: ...
    def __call__(self, unit_id: str, attributes: Mapping[str, Any]) -> Any: ...
