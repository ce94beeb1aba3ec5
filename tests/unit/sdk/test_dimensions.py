"""What the SDK attaches to an exposure: the unit's values of the experiment's dimensions, as
strings, only those, and never anything the exposure service would reject the exposure for."""

from __future__ import annotations

import enum
import math
from typing import Any

import orjson
import pytest
from assay.dimensions import (
    MAX_ATTRIBUTES,
    attribute_text,
    dimension_attributes,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import envelope
from tests.support.strategies import json_documents


class Tier(str, enum.Enum):  # noqa: UP042  # str() of it is 'Tier.GOLD', not its value
    GOLD = "gold"


@pytest.mark.parametrize(
    ("value", "text"),
    [("US", "US"), ("", ""), ("ü" * 256, "ü" * 256), (True, "true"), (False, "false"), (0, "0"), (-42, "-42"),
     (2.5, "2.5"), (1e21, "1e+21"), (Tier.GOLD, "gold")],
)  # fmt: skip
def test_values_become_strings(value: object, text: str) -> None:
    assert attribute_text(value) == text


@pytest.mark.parametrize(
    "value",
    [None, ["US"], {"a": "b"}, ("x",), b"US", object(), "x" * 257, "\ud800", math.nan, math.inf, -math.inf,
     10**300, pytest.param(10**5000, id="int-past-the-digit-limit")],
)  # fmt: skip
def test_values_an_exposure_cannot_carry_are_left_out(value: object) -> None:
    assert attribute_text(value) is None


def test_only_the_dimensions_and_only_those_the_unit_has() -> None:
    unit = {"country": "US", "platform": "ios", "beta": True, "age": 31, "email": "a@b.c", "plan": None}
    assert dimension_attributes(["country", "beta", "age", "plan", "locale"], unit) == {
        "country": "US", "beta": "true", "age": "31",
    }  # fmt: skip
    assert dimension_attributes([], unit) == {} and dimension_attributes(["country"], None) == {}
    assert dimension_attributes(["country"], {}) == {}


def test_a_bad_value_loses_only_itself() -> None:
    unit = {"country": "x" * 1000, "platform": "ios", "tier": ["a"]}
    assert dimension_attributes(["country", "platform", "tier"], unit) == {"platform": "ios"}


def test_names_the_service_would_refuse_are_skipped() -> None:
    unit = {"bad name": "x", "": "y", "ok": "z", "a\n": "w"}
    assert dimension_attributes(["bad name", "", "a\n", 7, "ok"], unit) == {"ok": "z"}  # type: ignore[list-item]


def test_at_most_the_envelope_limit_of_attributes() -> None:
    names = [f"d{i}" for i in range(30)]
    carried = dimension_attributes(names, dict.fromkeys(names, "v"))
    assert list(carried) == names[:MAX_ATTRIBUTES]


unit_values = st.one_of(
    json_documents(key_size=4, list_size=2, object_size=2, max_leaves=4),
    st.text(min_size=250, max_size=260), st.integers(), st.sampled_from(["\udfff", "a\x00b", Tier.GOLD]),
)  # fmt: skip
names = st.one_of(st.sampled_from(["country", "os.version", "_x", "bad name", "9x", "a\n"]), st.text(max_size=5))


@settings(max_examples=400, deadline=None)
@given(dimensions=st.lists(names, max_size=25), attributes=st.dictionaries(names, unit_values, max_size=25))
def test_what_the_sdk_attaches_the_service_accepts(dimensions: list[str], attributes: dict[str, Any]) -> None:
    carried = dimension_attributes(dimensions, attributes)
    assert set(carried) <= set(dimensions) & set(attributes)
    assert envelope.attributes_problem(carried) is None
    assert orjson.loads(orjson.dumps(carried)) == carried  # encodable, as the service must write it
