"""The attributes an exposure carries: the unit's values of the experiment's `dimensions`.

Results are sliced by these values as they were at a unit's first exposure (docs/api.md). The
exposure service takes at most `MAX_ATTRIBUTES` string values of at most
`MAX_ATTRIBUTE_VALUE_LENGTH` characters under names like targeting attributes, and rejects an
exposure whose attributes break that; so a value that would break it is left out here instead,
and the exposure is still logged (that unit falls in the slice `__missing__` of that dimension).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from assay.models import ATTRIBUTE_PATTERN

# The limits of `services.common.envelope` (tests/unit/sdk/test_dimensions.py holds them equal).
MAX_ATTRIBUTES = 20
MAX_ATTRIBUTE_VALUE_LENGTH = 256
ATTRIBUTE_NAME = re.compile(ATTRIBUTE_PATTERN.removeprefix("^").removesuffix("$"))


def attribute_text(value: object) -> str | None:
    """How a dimension value travels: strings as they are, booleans as "true"/"false", numbers
    in Python's own text; None for anything else, or for text an exposure cannot carry."""
    if isinstance(value, str):
        text = str.__str__(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        try:
            text = str(value)
        except ValueError:  # an int past Python's digit limit for text conversion
            return None
    else:
        return None
    if len(text) > MAX_ATTRIBUTE_VALUE_LENGTH:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 message can carry it
        return None
    return text


def dimension_attributes(dimensions: Sequence[str], attributes: Mapping[str, Any] | None) -> dict[str, str]:
    """The unit's values of `dimensions` (only those), as an exposure carries them; dimensions
    the unit has no usable value for are left out."""
    if not dimensions or not attributes:
        return {}
    carried: dict[str, str] = {}
    for name in dimensions:
        if len(carried) == MAX_ATTRIBUTES:
            break
        if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name) or name not in attributes:
            continue
        text = attribute_text(attributes[name])
        if text is not None:
            carried[name] = text
    return carried
