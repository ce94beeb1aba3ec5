"""Assay's statistics engine: pure functions over per-variant sufficient statistics.

No I/O and no raw rows. Expected failures come back as `AnalysisError` / `InputError` data
with stable codes (`ErrorCode`); exceptions mean a programming error.
"""

from services.scorecard.stats.analyze import analyze
from services.scorecard.stats.cuped import (
    cuped_adjusted_difference,
    cuped_adjusted_variance,
    cuped_baseline_covariance,
    cuped_theta,
    cuped_variance_reduction,
)
from services.scorecard.stats.decision import (
    DecisionSummary,
    MetricOutcome,
    Role,
    Verdict,
    decide,
    describe_effect,
)
from services.scorecard.stats.errors import AnalysisError, ErrorCode, InputError
from services.scorecard.stats.formulas import (
    delta_method_ratio_variance,
    delta_method_relative_variance,
    ratio_unit_variance,
    ratio_variance_delta_method,
    sample_covariance,
    sample_mean,
    sample_variance,
    welch_dof,
)
from services.scorecard.stats.guardrails import GuardrailResult, guardrail_test
from services.scorecard.stats.moments import UnitMoments, mean_metric_moments, ratio_metric_moments
from services.scorecard.stats.multiple import (
    Correction,
    adjust_p_values,
    benjamini_hochberg_adjust,
    correct_comparisons,
    holm_adjust,
)
from services.scorecard.stats.payload import analyze_payload, variant_stats_from_mapping
from services.scorecard.stats.power import minimum_detectable_effect, sample_size_per_variant
from services.scorecard.stats.results import (
    AnalyzeResult,
    Comparison,
    ComparisonEstimates,
    CupedSummary,
    Estimate,
)
from services.scorecard.stats.sequential import (
    DEFAULT_SEQUENTIAL_TUNING,
    always_valid_p_value,
    confidence_sequence_halfwidth,
    sequential_rho,
)
from services.scorecard.stats.srm import SrmResult, srm_chi_square
from services.scorecard.stats.sufficient import (
    CovariateStats,
    DenominatorStats,
    SampleStats,
    VariantStats,
)
from services.scorecard.stats.ttest import TTestResult, welch_t_test
from services.scorecard.stats.validation import (
    MetricType,
    validate_analysis_request,
    validate_parameters,
    validate_variant_stats,
)

__all__ = [
    "DEFAULT_SEQUENTIAL_TUNING",
    "AnalysisError",
    "AnalyzeResult",
    "Comparison",
    "ComparisonEstimates",
    "Correction",
    "CovariateStats",
    "CupedSummary",
    "DecisionSummary",
    "DenominatorStats",
    "ErrorCode",
    "Estimate",
    "GuardrailResult",
    "InputError",
    "MetricOutcome",
    "MetricType",
    "Role",
    "SampleStats",
    "SrmResult",
    "TTestResult",
    "UnitMoments",
    "VariantStats",
    "Verdict",
    "adjust_p_values",
    "always_valid_p_value",
    "analyze",
    "analyze_payload",
    "benjamini_hochberg_adjust",
    "confidence_sequence_halfwidth",
    "correct_comparisons",
    "cuped_adjusted_difference",
    "cuped_adjusted_variance",
    "cuped_baseline_covariance",
    "cuped_theta",
    "cuped_variance_reduction",
    "decide",
    "delta_method_ratio_variance",
    "delta_method_relative_variance",
    "describe_effect",
    "guardrail_test",
    "holm_adjust",
    "mean_metric_moments",
    "minimum_detectable_effect",
    "ratio_metric_moments",
    "ratio_unit_variance",
    "ratio_variance_delta_method",
    "sample_covariance",
    "sample_mean",
    "sample_size_per_variant",
    "sample_variance",
    "sequential_rho",
    "srm_chi_square",
    "validate_analysis_request",
    "validate_parameters",
    "validate_variant_stats",
    "variant_stats_from_mapping",
    "welch_dof",
    "welch_t_test",
]
