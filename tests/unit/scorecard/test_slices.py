"""Slices on the scorecard: the corrected slice family, the slice-mix test, the Simpson guard and
per-slice SRM, from hand-made results documents (no services)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from services.common.registry.models import AnalysisPlan, ExperimentPublic
from services.common.results import ResultsDocument
from services.scorecard.pages.render import environment
from services.scorecard.pages.slice_tables import slice_tables
from services.scorecard.scorecard import MetricPlan, build_scorecard
from services.scorecard.slices import SliceAnalysis, corrected_comparisons, slice_correction
from services.scorecard.stats import AnalysisError, AnalyzeResult, Comparison, Correction, ErrorCode, Role
from services.scorecard.stats.slices import SliceEffect, opposite_sign_share, slice_mix_test
from tests.integration.scorecard.documents import SliceSpec, sliced_results

PLAN = {"primary": ["conversion"], "secondary": ["revenue"], "guardrails": ["latency_ms"]}


def experiment(**fields: Any) -> ExperimentPublic:
    return ExperimentPublic.model_validate({
        "key": "sliced", "name": "Sliced", "status": "running", "version": 1, "salt": "sliced",
        "created_at": "2026-11-20T00:00:00Z", "updated_at": "2026-11-20T00:00:00Z",
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
        "metrics": PLAN, "dimensions": ["country"], **fields,
    })  # fmt: skip


def scorecard(slices: dict[str, SliceSpec], seed: int = 7, **fields: Any) -> dict[str, Any]:
    document = ResultsDocument.model_validate(sliced_results("sliced", "country", slices, seed=seed))
    return build_scorecard(document, experiment(**fields))


# --- the corrected family ---------------------------------------------------------------------


def reference(p_values: np.ndarray, correction: Correction) -> np.ndarray:
    """statsmodels' corrected p-values (a dev dependency: the reference, not the implementation)."""
    method = "holm" if correction is Correction.HOLM else "fdr_bh"
    return np.asarray(multipletests(p_values, alpha=0.05, method=method)[1])


def holm_reference(p_values: np.ndarray) -> np.ndarray:
    return reference(p_values, Correction.HOLM)


def _comparison(variant: str, p_value: float | None) -> Comparison:
    if p_value is None:
        error = AnalysisError(ErrorCode.TOO_FEW_UNITS, "too few")
        return Comparison(variant, "control", error=error)
    return Comparison(variant, "control", absolute_effect=0.1, p_value=p_value, significant=p_value < 0.05)


ROLES = st.sampled_from([Role.PRIMARY, Role.SECONDARY, Role.GUARDRAIL])
P_VALUE = st.one_of(st.none(), st.floats(1e-9, 1.0))


@st.composite
def slice_families(draw: st.DrawFn) -> list[SliceAnalysis]:
    n_variants = draw(st.integers(1, 3))
    roles = draw(st.lists(ROLES, min_size=1, max_size=4))
    slices = []
    for index in range(draw(st.integers(1, 8))):
        plans = [MetricPlan(f"m{j}", role, "mean", True, []) for j, role in enumerate(roles)]
        results = [AnalyzeResult(comparisons=[_comparison(f"t{v}", draw(P_VALUE)) for v in range(n_variants)])
                   for _ in roles]  # fmt: skip
        slices.append(SliceAnalysis("country", f"v{index}", {"control": 10, "t0": 10}, None, plans, results))
    return slices


def _flatten(slices: list[SliceAnalysis], comparisons: list[list[list[Comparison]]]) -> tuple[list[Any], ...]:
    raw, corrected, guardrails = [], [], []
    for item, per_metric in zip(slices, comparisons, strict=True):
        for plan, result, compared in zip(item.plans, item.results, per_metric, strict=True):
            for before, after in zip(result.comparisons, compared, strict=True):
                if plan.role is Role.GUARDRAIL or before.p_value is None:
                    guardrails.append((before, after))
                else:
                    raw.append(before.p_value)
                    corrected.append(after)
    return raw, corrected, guardrails


@settings(max_examples=60, deadline=None)
@given(slice_families(), st.sampled_from([Correction.HOLM, Correction.BH]))
def test_the_slice_family_is_every_primary_and_secondary_comparison_corrected_together(slices, correction):
    raw, corrected, untouched = _flatten(slices, corrected_comparisons(slices, correction, 0.05))
    for before, after in untouched:  # guardrails and errors keep their p-values
        assert after == before
    if not raw:
        return
    p_values = np.array(raw)
    expected = reference(p_values, correction)
    assert [c.p_value for c in corrected] == pytest.approx(list(expected), rel=1e-12)
    # Significance is the corrected p against alpha; a p-value that equals alpha up to the last
    # bits (BH's p m / k can land on 0.05 exactly) may fall either side in two implementations.
    decided = [(c.significant, p < 0.05) for c, p in zip(corrected, expected, strict=True)
               if abs(p - 0.05) > 1e-12 * 0.05]  # fmt: skip
    assert all(ours == theirs for ours, theirs in decided)


def test_the_slice_correction_is_holm_unless_bh_is_asked_for():
    assert slice_correction(AnalysisPlan(correction="holm")) is Correction.HOLM
    assert slice_correction(AnalysisPlan(correction="none")) is Correction.HOLM  # slices are always corrected
    assert slice_correction(AnalysisPlan(correction="bh")) is Correction.BH
    assert slice_correction(AnalysisPlan(correction="holm"), "bh") is Correction.BH
    assert slice_correction(AnalysisPlan(correction="bh"), "holm") is Correction.HOLM


def test_a_scorecard_keeps_raw_and_corrected_p_values_in_its_slices():
    card = scorecard({"US": SliceSpec({"control": 3000, "treatment": 3000}, lift=0.3),
                      "DE": SliceSpec({"control": 2000, "treatment": 2000}, lift=0.3)})  # fmt: skip
    checks = card["slice_checks"]
    assert checks["correction"] == "holm" and checks["family_size"] == 4  # 2 slices x (conversion, revenue)
    in_family = [c for s in card["slices"] for m in s["metrics"] if m["corrected"] for c in m["comparisons"]]
    raw = np.array([c["raw_p_value"] for c in in_family])
    assert [c["p_value"] for c in in_family] == pytest.approx(list(holm_reference(raw)), rel=1e-12)
    assert all(c["significant"] == (c["p_value"] < 0.05) for c in in_family)
    latency = [m for s in card["slices"] for m in s["metrics"] if m["name"] == "latency_ms"]
    assert all(not m["corrected"] and m["comparisons"][0]["p_value"] == m["comparisons"][0]["raw_p_value"]
               for m in latency)  # fmt: skip
    bh = scorecard({"US": SliceSpec({"control": 3000, "treatment": 3000}, lift=0.3),
                    "DE": SliceSpec({"control": 2000, "treatment": 2000}, lift=0.3)},
                   analysis={"correction": "bh"})  # fmt: skip
    assert bh["slice_checks"]["correction"] == "bh"
    bh_family = [c for s in bh["slices"] for m in s["metrics"] if m["corrected"] for c in m["comparisons"]]
    expected = reference(np.array([c["raw_p_value"] for c in bh_family]), Correction.BH)
    assert [c["p_value"] for c in bh_family] == pytest.approx(list(expected), rel=1e-12)


# --- the slice-mix test -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_the_slice_mix_test_is_scipys_chi_square_test_of_independence(seed):
    rng = np.random.default_rng(seed)
    n_variants, n_values = rng.integers(2, 4), rng.integers(2, 7)
    table = rng.integers(20, 2000, size=(n_variants, n_values))
    counts = {f"v{i}": {f"s{j}": int(table[i, j]) for j in range(n_values)} for i in range(n_variants)}
    result = slice_mix_test(counts, threshold=0.001)
    assert result is not None
    expected = scipy_stats.chi2_contingency(table, correction=False)
    assert result.chi2 == pytest.approx(expected.statistic, rel=1e-10)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert result.dof == expected.dof and result.mismatch == (expected.pvalue < 0.001)
    assert result.shares["v0"]["s0"] == pytest.approx(table[0, 0] / table[0].sum())


def test_the_slice_mix_test_leaves_out_empty_values_and_needs_two_of_each():
    counts = {"control": {"US": 500, "DE": 300, "FR": 0}, "treatment": {"US": 520, "DE": 280, "FR": 0}}
    result = slice_mix_test(counts, threshold=0.001)
    assert result is not None
    expected = scipy_stats.chi2_contingency(np.array([[500, 300], [520, 280]]), correction=False)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-10) and result.dof == 1
    assert slice_mix_test({"control": {"US": 500}, "treatment": {"US": 480}}, 0.001) is None
    assert slice_mix_test({"control": {"US": 5, "DE": 3}, "treatment": {"US": 4, "DE": 6}}, 0.001) is None


# --- Simpson's paradox and slice SRM ----------------------------------------------------------


def test_opposite_sign_share_counts_units_of_slices_pointing_the_other_way():
    slices = [SliceEffect("US", -0.01, 600), SliceEffect("DE", 0.05, 300), SliceEffect("FR", None, 100)]
    found = opposite_sign_share(0.02, slices)
    assert found is not None and found.share == pytest.approx(0.6) and found.values == ("US",)
    assert opposite_sign_share(0.0, slices) is None
    against = opposite_sign_share(-0.02, slices)
    assert against is not None and against.values == ("DE",) and against.share == pytest.approx(0.3)


def test_an_overall_effect_contradicted_by_the_slices_holding_most_units_is_flagged():
    # US (60% of units) loses, DE wins big: overall conversion rises, significantly.
    card = scorecard({"US": SliceSpec({"control": 6000, "treatment": 6000}, lift=-0.2),
                      "DE": SliceSpec({"control": 4000, "treatment": 4000}, lift=0.9)})  # fmt: skip
    conversion = card["metrics"][0]["comparisons"][0]
    assert conversion["significant"] and conversion["absolute_effect"] > 0
    finding = next(f for f in card["slice_checks"]["simpson"] if f["metric"] == "conversion")
    assert finding["dimension"] == "country" and finding["values"] == ["US"]
    assert finding["share"] == pytest.approx(0.6) and finding["overall_sign"] == 1
    assert ("simpson: the overall effect on conversion is positive but negative in slices holding 60% of units "
            "(country: US)") in "\n".join(card["warnings"])  # fmt: skip
    assert card["slice_checks"]["srm_mismatches"] == [] and not any(m["mismatch"] for m in card["slice_checks"]["mix"])


def test_slices_that_agree_with_the_overall_effect_raise_no_warning():
    card = scorecard({"US": SliceSpec({"control": 6000, "treatment": 6000}, lift=0.3),
                      "DE": SliceSpec({"control": 4000, "treatment": 4000}, lift=0.4)})  # fmt: skip
    assert card["metrics"][0]["comparisons"][0]["significant"]
    assert card["slice_checks"]["simpson"] == [] and card["warnings"] == []


def test_a_planted_slice_srm_flags_that_slice_only():
    # FR lost a fifth of its treatment units; overall the split still passes.
    card = scorecard({"US": SliceSpec({"control": 6000, "treatment": 6000}),
                      "DE": SliceSpec({"control": 4000, "treatment": 4000}),
                      "FR": SliceSpec({"control": 1000, "treatment": 800})})  # fmt: skip
    assert card["srm"]["mismatch"] is False
    flagged = [(s["value"], s["srm"]["mismatch"]) for s in card["slices"]]
    assert flagged == [("US", False), ("DE", False), ("FR", True)]
    assert card["slice_checks"]["srm_mismatches"] == [{"dimension": "country", "value": "FR"}]
    assert card["slices"][2]["units"] == {"control": 1000, "treatment": 800}
    srm_warnings = [w for w in card["warnings"] if w.startswith("slice srm:")]
    assert len(srm_warnings) == 1 and "country = FR" in srm_warnings[0]
    assert any(w.startswith("slice mix: the split of units by country differs") for w in card["warnings"])
    assert card["decision"]["verdict"] != "invalid"  # the slice is flagged; the overall result stands


def test_a_document_without_slices_has_no_slice_blocks():
    document = sliced_results("sliced", "country", {"US": SliceSpec({"control": 500, "treatment": 500})})
    del document["slices"], document["dimensions"]
    card = build_scorecard(ResultsDocument.model_validate(document), experiment())
    assert "slices" not in card and "slice_checks" not in card and card["warnings"] == []


def test_three_variants_name_the_variant_and_the_page_draws_every_column():
    three = [{"key": "control", "weight": 0.4}, {"key": "treatment", "weight": 0.4}, {"key": "b", "weight": 0.2}]
    document = sliced_results("sliced", "country", {
        "US": SliceSpec({"control": 4000, "treatment": 4000, "b": 2000}, lift=-0.3),
        "DE": SliceSpec({"control": 3000, "treatment": 3000, "b": 1500}, lift=1.2),
        "XX": SliceSpec({"control": 1, "treatment": 0, "b": 0})})  # fmt: skip
    card = build_scorecard(ResultsDocument.model_validate(document), experiment(variants=three))
    assert card["slice_checks"]["family_size"] == 8  # 2 slices x 2 metrics x 2 variants; XX has no p-values
    assert {f["variant"] for f in card["slice_checks"]["simpson"]} == {"treatment", "b"}
    assert any(w.startswith("simpson: the overall effect of b on conversion") for w in card["warnings"])
    (table,) = slice_tables(card)
    assert [(c["metric"], c["variant"]) for c in table["columns"]][:2] == [
        ("conversion", "treatment"),
        ("conversion", "b"),
    ]
    assert table["rows"][2]["srm"] == {"state": "unjudged", "text": "too few units"}
    assert table["rows"][2]["cells"][0]["error"]  # the comparison's error in words, not a number
    html = (
        environment()
        .get_template("experiment.html")
        .render(card=card, groups=[], slices=[table], quality=[], hypothesis="", signed_in=True)
    )
    assert "conversion (b)" in html and "guardrail, uncorrected" in html and 'id="slices-country"' in html
