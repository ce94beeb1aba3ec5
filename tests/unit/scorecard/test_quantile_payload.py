"""POST /v1/analyze's quantile path on its own (no pydantic in front): any JSON ends as typed
input errors or comparisons, never an exception; consistent blocks pass, impossible ones are named."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.scorecard.stats import AnalyzeResult, ErrorCode, analyze_payload

BLOCK = {"probability": 0.9, "n_events": 900, "value": 1200.0, "lower_probability": 0.88,
         "upper_probability": 0.92, "lower_value": 1100.0, "upper_value": 1350.0, "events_below": 810,
         "events_below_squares": 2700, "events_squares": 3300, "events_products": 2980}  # fmt: skip


def body(*blocks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    variants = [{"key": f"v{i}", "n": 300, "quantile": block} for i, block in enumerate(blocks)]
    return {"metric": {"type": "quantile"}, "variants": variants, **extra}


def codes(result: AnalyzeResult) -> set[ErrorCode]:
    return {error.code for error in result.errors}


def test_a_consistent_block_is_compared():
    result = analyze_payload(body(BLOCK, {**BLOCK, "value": 1250.0}, BLOCK, correction="holm"))
    assert result.ok and [c.variant for c in result.comparisons] == ["v1", "v2"]
    assert result.comparisons[0].absolute_effect == 50.0 and result.comparisons[1].absolute_effect == 0.0


def test_impossible_blocks_are_named():
    assert codes(analyze_payload(body(BLOCK, {**BLOCK, "events_products": 4000}))) == {ErrorCode.INCONSISTENT_QUANTILE}
    assert codes(analyze_payload(body(BLOCK, {**BLOCK, "events_squares": 10}))) == {ErrorCode.INCONSISTENT_QUANTILE}
    assert codes(analyze_payload(body(BLOCK, {**BLOCK, "upper_value": 1000.0}))) == {ErrorCode.INCONSISTENT_QUANTILE}
    assert codes(analyze_payload(body(BLOCK, {**BLOCK, "n_events": -1}))) == {ErrorCode.NON_INTEGER_COUNT}
    assert codes(analyze_payload(body(BLOCK))) == {ErrorCode.TOO_FEW_VARIANTS}
    assert ErrorCode.INVALID_PARAMETER in codes(analyze_payload(body(BLOCK, BLOCK, sequential=True)))
    assert ErrorCode.DUPLICATE_VARIANT_KEY in codes(analyze_payload(
        {"metric": {"type": "quantile"}, "variants": [{"key": "a", "n": 300, "quantile": BLOCK}] * 2}))  # fmt: skip


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True),
                        st.text(max_size=3), st.lists(st.integers(), max_size=2))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(BLOCK)), JSON_VALUES, max_size=4), st.sampled_from(sorted(BLOCK)))
def test_any_json_in_a_block_is_an_answer_not_an_exception(changes: dict[str, Any], dropped: str):
    hostile = {key: value for key, value in {**BLOCK, **changes}.items() if key != dropped or changes}
    result = analyze_payload(body(BLOCK, hostile))
    assert isinstance(result, AnalyzeResult)
    assert result.errors or all(c.p_value is not None or c.error is not None for c in result.comparisons)
