"""The fast path agrees with the pydantic models: whatever it accepts, the model accepts with
the same values; what it declines is left to the model."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.exposure.items import event_from_model, exposure_from_model, quick_event, quick_exposure
from services.exposure.schemas import EventIn, ExposureIn
from services.exposure.timestamps import TimeWindow
from tests.support.strategies import json_documents

NOW = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
WINDOW = TimeWindow.at(NOW, max_future_seconds=300, horizon_days=30)

ids = st.one_of(
    st.text(st.characters(min_codepoint=32, exclude_categories=["Cs"]), min_size=1, max_size=8),
    st.text(max_size=8), st.text(min_size=120, max_size=260),
    st.sampled_from(["u1", "a\x00", "x\n", "\ud800", ""]),
    st.integers(), st.none(), st.floats(), st.booleans(),
)  # fmt: skip
keys = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True),
    st.sampled_from(["ok\n", "Bad", "-x", "a" * 65]),
    ids,
)
stamps = st.one_of(
    st.integers(NOW_MS - 31 * 86_400_000, NOW_MS + 400_000), st.floats(), st.booleans(), st.none(),
    st.sampled_from(["2026-11-20T11:00:00Z", "2026-11-20T11:00:00.123Z", "2026-11-20t11:00:00.5+01:00",
                     "2026-11-20T11:00:00", "2026-11-20T11:00:00.123Z\n", "2026-02-30T00:00:00Z", "x"]),
)  # fmt: skip
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
properties = st.one_of(
    st.dictionaries(st.text(max_size=6), json_documents(scalars, key_size=4, list_size=3, object_size=3,
                                                        max_leaves=8), max_size=4),
    st.lists(scalars, max_size=2), scalars,
)  # fmt: skip
common = {"event_id": ids, "unit_id": ids, "timestamp": stamps, "extra": scalars}
attribute_names = st.one_of(st.sampled_from(["country", "os.version", "_x", "a\n", "bad name", "9x", "x" * 65]),
                            st.text(max_size=6))  # fmt: skip
attributes = st.one_of(
    st.dictionaries(attribute_names, st.one_of(st.text(max_size=4), st.just("v" * 257), scalars), max_size=4),
    st.dictionaries(st.from_regex(r"[a-z]{1,3}", fullmatch=True), st.just("v"), min_size=19, max_size=23),
    st.lists(st.text(max_size=3), max_size=2),
    scalars,
    json_documents(scalars, key_size=4, list_size=3, object_size=3, max_leaves=8),
)
VALID_EXPOSURE = {
    "event_id": "e-1",
    "experiment": "k",
    "variant": "control",
    "unit_id": "u",
    "timestamp": NOW_MS,
}
VALID_EVENT = {"name": "purchase", "unit_id": "u", "timestamp": NOW_MS, "value": 1.5, "properties": {"a": 1}}


def mutations(valid: dict[str, Any], hostile: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A valid item with up to two fields replaced by anything, and maybe one field dropped."""
    changes = st.dictionaries(st.sampled_from(sorted(hostile)), st.none(), max_size=2).flatmap(
        lambda chosen: st.fixed_dictionaries({name: hostile[name] for name in chosen})
    )
    dropped = st.sampled_from([None, *sorted(valid)])
    return st.tuples(changes, dropped).map(lambda pair: {k: v for k, v in {**valid, **pair[0]}.items() if k != pair[1]})


exposures = mutations(VALID_EXPOSURE, {**common, "experiment": keys, "variant": keys, "attributes": attributes})
events = mutations(VALID_EVENT, {**common, "name": keys, "properties": properties,
                                 "value": st.one_of(scalars, st.integers(-(10**13), 10**13))})  # fmt: skip


def model_or_none(model: type[ExposureIn] | type[EventIn], raw: dict[str, Any]) -> Any:
    try:
        return model.model_validate(raw, context=WINDOW)
    except ValidationError:
        return None


@settings(max_examples=600, deadline=None)
@given(raw=exposures)
def test_quick_exposures_agree_with_the_model(raw: dict[str, Any]) -> None:
    quick = quick_exposure(raw, WINDOW)
    model = model_or_none(ExposureIn, raw)
    if quick is not None:
        assert model is not None and quick == exposure_from_model(model)


@settings(max_examples=600, deadline=None)
@given(raw=events)
def test_quick_events_agree_with_the_model(raw: dict[str, Any]) -> None:
    quick = quick_event(raw, WINDOW)
    model = model_or_none(EventIn, raw)
    if quick is not None:
        assert model is not None and quick == event_from_model(model)


def test_the_common_case_takes_the_fast_path() -> None:
    exposure = {"event_id": "e", "experiment": "k", "variant": "control", "unit_id": "u", "timestamp": NOW_MS}
    assert quick_exposure(exposure, WINDOW) is not None
    assert quick_exposure({**exposure, "timestamp": "2026-11-20T11:00:00.123Z"}, WINDOW) is not None
    sliced = quick_exposure({**exposure, "attributes": {"country": "US", "platform": "ios"}}, WINDOW)
    assert sliced is not None and sliced.attributes == {"country": "US", "platform": "ios"}
    event = {"name": "purchase", "unit_id": "u", "timestamp": NOW_MS, "value": 3, "properties": {"a": [1]}}
    assert quick_event(event, WINDOW) is not None
