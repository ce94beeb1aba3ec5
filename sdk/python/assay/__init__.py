"""Assay SDK: deterministic bucketing, targeting and clients for the Assay platform."""

from assay.batching import RetryPolicy
from assay.bucketing import BUCKETING_VERSION, BUCKETS
from assay.client import Client
from assay.evaluation import Assignment, evaluate
from assay.models import Condition, ExperimentConfig, Variant
from assay.sticky import InMemoryStickyStore, RedisStickyStore, StickyStore

__all__ = [
    "BUCKETING_VERSION",
    "BUCKETS",
    "Assignment",
    "Client",
    "Condition",
    "Decision",
    "ExperimentConfig",
    "InMemoryStickyStore",
    "RedisStickyStore",
    "RetryPolicy",
    "StickyStore",
    "Variant",
    "evaluate",
]
__version__ = "0.1.0"

# The old name of `Assignment`, kept so applications written against 0.1 keep importing it.
Decision = Assignment
