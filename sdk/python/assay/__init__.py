"""Assay SDK: deterministic bucketing, targeting and clients for the Assay platform."""

from assay.bucketing import BUCKETING_VERSION, BUCKETS
from assay.evaluation import Decision, evaluate
from assay.models import Condition, ExperimentConfig, Variant

__all__ = [
    "BUCKETING_VERSION",
    "BUCKETS",
    "Condition",
    "Decision",
    "ExperimentConfig",
    "Variant",
    "evaluate",
]
__version__ = "0.1.0"
