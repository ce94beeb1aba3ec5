"""Regenerate `bucketing.json` from the current bucketing code.

Run only when BUCKETING_VERSION changes on purpose: the file pins what every deployed SDK
and service computes, so a diff here means live experiments would reshuffle.

    python -m tests.golden.generate_bucketing
"""

from __future__ import annotations

import json
from pathlib import Path

import mmh3
from assay.bucketing import (
    BUCKETING_VERSION,
    BUCKETS,
    VARIANT_SEED,
    choose_variant_index,
    in_traffic,
    traffic_bucket,
    variant_bucket,
)

CONFIGS = [
    {"salt": "checkout-button", "traffic": 1.0, "weights": [0.5, 0.5]},
    {"salt": "checkout-button", "traffic": 0.1, "weights": [0.5, 0.5]},
    {"salt": "pricing-page", "traffic": 0.5, "weights": [0.2, 0.3, 0.5]},
    {"salt": "search-ranker-v2", "traffic": 0.25, "weights": [0.9, 0.1]},
    {"salt": "onboarding", "traffic": 1.0, "weights": [0.3333, 0.3333, 0.3334]},
    {"salt": "ünïcode-salt ☃", "traffic": 0.75, "weights": [0.25, 0.25, 0.25, 0.25]},
]
UNITS = [f"user-{i}" for i in range(20)] + [
    "",
    "0",
    "a" * 256,
    "用户-42",
    "émile@example.com",
    "🙂",
    "unit with spaces",
    "x:y:z",
]


def build() -> dict[str, object]:
    cases = []
    for config in CONFIGS:
        salt, traffic, weights = config["salt"], config["traffic"], config["weights"]
        for unit in UNITS:
            assert isinstance(salt, str) and isinstance(traffic, float) and isinstance(weights, list)
            bucket = variant_bucket(salt, unit)
            cases.append({
                "salt": salt, "unit_id": unit, "traffic": traffic, "weights": weights,
                "hash": mmh3.hash(f"{salt}:{unit}", VARIANT_SEED, signed=False),
                "variant_bucket": bucket, "traffic_bucket": traffic_bucket(salt, unit),
                "enrolled": in_traffic(salt, unit, traffic),
                "variant_index": choose_variant_index(bucket, weights),
            })  # fmt: skip
    return {"bucketing_version": BUCKETING_VERSION, "buckets": BUCKETS, "cases": cases}


if __name__ == "__main__":
    target = Path(__file__).with_name("bucketing.json")
    target.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {target}")
