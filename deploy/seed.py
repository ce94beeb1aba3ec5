"""Seed the local stack with a demo experiment (idempotent: safe to run twice)."""

from __future__ import annotations

import httpx

DEMO_ADMIN_KEY = "dev-admin-key"
DEMO_EXPERIMENT = {
    "key": "checkout-button",
    "name": "Green checkout button",
    "hypothesis": "A green button makes checkout more visible and lifts conversion",
    "owner": "payments",
    "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
    "traffic": 1.0,
    "targeting": [{"attribute": "country", "op": "in", "value": ["US", "CA", "GB", "DE"]}],
    "metrics": {"primary": ["conversion"], "secondary": ["revenue"], "guardrails": []},
}


def seed_demo(assignment_url: str, admin_key: str = DEMO_ADMIN_KEY) -> None:
    with httpx.Client(
        base_url=assignment_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=10
    ) as client:
        key = DEMO_EXPERIMENT["key"]
        existing = client.get(f"/v1/experiments/{key}")
        if existing.status_code == 404:
            client.post("/v1/experiments", json=DEMO_EXPERIMENT).raise_for_status()
            existing = client.get(f"/v1/experiments/{key}")
        if existing.status_code == 401:
            print("demo not seeded: the admin key was refused (set ASSAY_ENV=dev or seed by hand)")
            return
        existing.raise_for_status()
        if existing.json()["status"] == "draft":
            client.post(
                f"/v1/experiments/{key}/status", json={"status": "running", "reason": "demo"}
            ).raise_for_status()
        print(f"demo experiment '{key}' is {client.get(f'/v1/experiments/{key}').json()['status']}")
