"""Always-valid inference with asymptotic confidence sequences.

Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2023), "Time-uniform central limit theory
and asymptotic confidence sequences", arXiv:2103.06476v7. Equation numbers refer to that
version, as in GrowthBook's gbstats, whose parametrisation (total units of both arms as
"time", the tuning parameter as the sample size where the sequence is tightest, default
5000) we follow so numbers are comparable.
"""

from __future__ import annotations

import math

DEFAULT_SEQUENTIAL_TUNING = 5000.0


def sequential_rho(alpha: float, tuning: float) -> float:
    """Mixing-variance parameter rho that makes the sequence tightest at n = tuning (eq. 161).

    rho^2 = (-2 log(alpha) + log(-2 log(alpha) + 1)) / tuning.
    """
    log_alpha = math.log(alpha)
    return math.sqrt((-2.0 * log_alpha + math.log(-2.0 * log_alpha + 1.0)) / tuning)


def confidence_sequence_halfwidth(variance_of_estimate: float, n_total: int, alpha: float, tuning: float) -> float:
    """Two-sided asymptotic confidence sequence halfwidth (eq. 9):

    sigma_hat * sqrt( 2 (N rho^2 + 1) / (N^2 rho^2) * log( sqrt(N rho^2 + 1) / alpha ) )

    with sigma_hat^2 = N * variance_of_estimate the per-unit variance of the estimate and
    N the units of both arms together.
    """
    rho_squared = sequential_rho(alpha, tuning) ** 2
    unit_variance = variance_of_estimate * n_total
    nr2 = n_total * rho_squared
    radicand = 2.0 * (nr2 + 1.0) / (n_total * nr2) * math.log(math.sqrt(nr2 + 1.0) / alpha)
    return math.sqrt(unit_variance * radicand)


def always_valid_p_value(
    estimate: float, variance_of_estimate: float, n_total: int, alpha: float, tuning: float
) -> float:
    """Smallest level at which the eq. 9 sequence, rho fixed by (alpha, tuning), excludes 0.

    Solving |estimate| = halfwidth(level) for the level gives the closed form
        p = min(1, sqrt(N rho^2 + 1) * exp(-N^2 rho^2 estimate^2 / (2 sigma_hat^2 (N rho^2 + 1))))
    which is 1 / (normal-mixture e-value) of eq. 155, so p <= alpha exactly when the
    confidence sequence at alpha excludes 0, and P(exists n: p_n <= a) <= a for every a
    (Ville's inequality) because rho does not depend on the data.
    """
    rho_squared = sequential_rho(alpha, tuning) ** 2
    unit_variance = variance_of_estimate * n_total
    nr2 = n_total * rho_squared
    exponent = -(n_total * nr2 * estimate * estimate) / (2.0 * unit_variance * (nr2 + 1.0))
    return min(1.0, math.sqrt(nr2 + 1.0) * math.exp(exponent))
