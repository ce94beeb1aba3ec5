"""Power: units per variant needed for a relative MDE, and the MDE reachable with n units.

Normal approximation for a two-sided Welch test of two independent means:
    n = (z_{1 - alpha'/2} + z_{power})^2 (sigma_b^2 + sigma_v^2) (1 - r) / delta^2
(e.g. Chow, Shao & Wang, "Sample Size Calculations in Clinical Research", 3.2.1; Kohavi,
Tang & Xu 2020, ch. 17) with delta = relative_mde * |baseline_mean|. Several treatment
variants are handled by Bonferroni, alpha' = alpha / (variants - 1): each treatment is
compared with the baseline, which keeps the family-wise error at most alpha and is
conservative next to the Holm correction used in the analysis. CUPED enters as the expected
variance reduction r (about rho^2 for a covariate with correlation rho).

Proportions use sigma^2 = p (1 - p) for the baseline and p' (1 - p'), p' = p (1 + mde), for
the variant; means use the given per-unit variance for both arms.
"""

from __future__ import annotations

import math

from scipy import optimize

from services.scorecard.stats.errors import AnalysisError, ErrorCode, InputError
from services.scorecard.stats.formulas import normal_quantile


def _parameter_error(
    baseline_mean: float,
    variance: float | None,
    alpha: float,
    power: float,
    n_variants: int,
    variance_reduction: float,
) -> InputError | None:
    problems = {
        "baseline_mean": not math.isfinite(baseline_mean) or baseline_mean == 0,
        "alpha": not 0 < alpha < 1,
        "power": not 0 < power < 1,
        "n_variants": isinstance(n_variants, bool) or not isinstance(n_variants, int) or n_variants < 2,
        "variance_reduction": not 0 <= variance_reduction < 1,
        "variance": variance is not None and not (math.isfinite(variance) and variance > 0),
    }
    if variance is None and not 0 < baseline_mean < 1:
        problems["baseline_mean"] = True
    for field, bad in problems.items():
        if bad:
            return InputError(ErrorCode.INVALID_PARAMETER, field, _PARAMETER_HELP[field])
    return None


_PARAMETER_HELP = {
    "baseline_mean": "baseline_mean must be finite and non-zero (a proportion: strictly in 0..1)",
    "alpha": "alpha must be strictly between 0 and 1",
    "power": "power must be strictly between 0 and 1",
    "n_variants": "n_variants counts the baseline too and must be an integer >= 2",
    "variance_reduction": "variance_reduction must be in [0, 1)",
    "variance": "variance must be a positive finite number (omit it for a proportion)",
    "relative_mde": "relative_mde must be a positive finite number",
    "n_per_variant": "n_per_variant must be an integer >= 2",
}


def critical_sum(alpha: float, power: float, n_variants: int) -> float:
    """z_{1 - alpha'/2} + z_{power} with the Bonferroni-split alpha' = alpha / (k - 1)."""
    per_comparison_alpha = alpha / (n_variants - 1)
    return normal_quantile(1.0 - per_comparison_alpha / 2.0) + normal_quantile(power)


def _summed_variance(baseline_mean: float, relative_mde: float, variance: float | None) -> float:
    if variance is not None:
        return 2.0 * variance
    variant_mean = baseline_mean * (1.0 + relative_mde)
    return baseline_mean * (1 - baseline_mean) + variant_mean * (1 - variant_mean)


def sample_size_per_variant(
    baseline_mean: float,
    relative_mde: float,
    *,
    variance: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    n_variants: int = 2,
    variance_reduction: float = 0.0,
) -> int | InputError:
    """Units per variant for a two-sided test to detect `relative_mde` with `power`."""
    error = _parameter_error(baseline_mean, variance, alpha, power, n_variants, variance_reduction)
    if error is None and not (math.isfinite(relative_mde) and relative_mde > 0):
        error = InputError(ErrorCode.INVALID_PARAMETER, "relative_mde", _PARAMETER_HELP["relative_mde"])
    if error is None and variance is None and baseline_mean * (1 + relative_mde) >= 1:
        error = InputError(
            ErrorCode.INVALID_PARAMETER,
            "relative_mde",
            "baseline_mean * (1 + relative_mde) must stay below 1 for a proportion",
        )
    if error is not None:
        return error
    delta = relative_mde * abs(baseline_mean)
    z = critical_sum(alpha, power, n_variants)
    spread = _summed_variance(baseline_mean, relative_mde, variance) * (1 - variance_reduction)
    needed = z * z * spread / (delta * delta) if delta * delta > 0 else math.inf
    if not math.isfinite(needed):  # an effect so small (or a baseline so near 0) that no sample detects it
        return InputError(ErrorCode.INVALID_PARAMETER, "relative_mde",
                          "the effect to detect is too small for any sample size; raise relative_mde")  # fmt: skip
    return max(2, math.ceil(needed))


def minimum_detectable_effect(
    baseline_mean: float,
    n_per_variant: int,
    *,
    variance: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    n_variants: int = 2,
    variance_reduction: float = 0.0,
) -> float | InputError | AnalysisError:
    """Smallest relative increase detectable with `power` given n units per variant.

    Closed form for means; for proportions the variant's variance depends on the effect, so
    the equation delta = z * sd(delta) / sqrt(n) is solved numerically (Brent's method).
    """
    error = _parameter_error(baseline_mean, variance, alpha, power, n_variants, variance_reduction)
    if error is None and (isinstance(n_per_variant, bool) or not isinstance(n_per_variant, int) or n_per_variant < 2):
        error = InputError(ErrorCode.INVALID_PARAMETER, "n_per_variant", _PARAMETER_HELP["n_per_variant"])
    if error is not None:
        return error
    z = critical_sum(alpha, power, n_variants)
    scale = (1 - variance_reduction) / n_per_variant
    if variance is not None:
        return z * math.sqrt(2.0 * variance * scale) / abs(baseline_mean)

    def shortfall(relative: float) -> float:
        spread = _summed_variance(baseline_mean, relative, None) * scale
        return relative * baseline_mean - z * math.sqrt(spread)

    ceiling = (1.0 - baseline_mean) / baseline_mean
    if shortfall(ceiling) < 0:
        return AnalysisError(
            ErrorCode.MDE_UNREACHABLE,
            f"with {n_per_variant} units per variant no increase of a {baseline_mean:g} "
            "proportion is detectable at this power",
        )
    return float(optimize.brentq(shortfall, 0.0, ceiling, xtol=1e-12))
