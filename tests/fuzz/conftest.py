"""Fuzzing fixtures: the real services over HTTP (real Redis, real Tansu broker; the session
fixtures of tests/support), each OpenAPI document loaded live with schemathesis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from deploy.processes import ServiceProcess
from tests.integration.scorecard.documents import publish, simulated_results
from tests.support.services import ADMIN_KEY, client_for, experiment_body

MAX_EXAMPLES = 25
EXAMPLE_KEY = "checkout-button"  # the experiment key the documents give as their example
# Reproducible in CI: a fixed seed, deterministic generation, and no example database written
# into the repository (Hypothesis would otherwise keep one under .hypothesis/).
CONFIG: dict[str, Any] = {
    "seed": 20261120,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "checks": {
        # Every built-in check runs, except:
        # - positive_data_acceptance: the services answer 422 with a sentence for what JSON Schema
        #   cannot state (weights summing to 1, statistics consistent with each other, one of
        #   relative_mde / n_per_variant, lifecycle rules), and that 422 is documented.
        "positive_data_acceptance": {"enabled": False},
        # - negative_data_rejection accepts 413 too: more items than a batch allows (maxItems) is
        #   a 413 by contract (docs/api.md, exposure service), not a 400/422.
        "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428]},
    },
    "operations": [
        {
            # Ingestion judges each item on its own by contract (docs/api.md: 202 with `rejected`
            # entries), so an invalid item is not a rejected request. Envelope errors are still
            # 4xx (tests/integration/exposure/test_hostile_input.py) and test_openapi.py checks
            # that every item of a 202 is either accepted or rejected.
            "include-path-regex": "^/v1/(exposures|events)$",
            "checks": {"negative_data_rejection": {"enabled": False}},
        },
    ],
}


def load(service: ServiceProcess) -> schemathesis.schemas.BaseSchema:
    config = SchemathesisConfig.from_dict(CONFIG)
    schema = schemathesis.openapi.from_url(f"{service.base_url}/openapi.json", config=config)
    return schema


@pytest.fixture(scope="session")
def assignment_schema(assignment: ServiceProcess) -> Any:
    return load(assignment)


@pytest.fixture(scope="session")
def exposure_schema(exposure_service: ServiceProcess) -> Any:
    return load(exposure_service)


@pytest.fixture(scope="session")
def scorecard_schema(scorecard: ServiceProcess, assignment: ServiceProcess, results_dir: Path) -> Any:
    # The documented example key has an experiment and results, so its scorecard is a 200.
    with client_for(assignment.base_url, ADMIN_KEY) as admin:
        created = admin.post("/v1/experiments", json=experiment_body(EXAMPLE_KEY))
        assert created.status_code in (201, 409), created.text
    publish(results_dir, simulated_results(EXAMPLE_KEY))
    return load(scorecard)
