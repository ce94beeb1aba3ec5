"""`get_variant` against the real assignment and exposure services: the exposures it logs, read
back from the broker, carry exactly the unit's values of the experiment's dimensions, in remote
and in local mode."""

from __future__ import annotations

from typing import Any

import assay
import httpx
import pytest

from deploy.broker import TansuBroker
from deploy.processes import ServiceProcess
from tests.support.kafka import EXPOSURES, read_topics
from tests.support.services import SDK_KEY, create_running

UNIT_ATTRIBUTES: dict[str, dict[str, Any]] = {
    # Dimensions country, beta, age, platform; everything else the unit has stays in the app.
    "full": {"country": "US", "beta": True, "age": 31, "platform": "ios", "email": "a@example.com"},
    "partial": {"country": "DE", "plan": "pro"},
    "unusable": {"country": "x" * 300, "beta": None, "age": [31], "platform": ["ios"]},
    "none": {},
}
EXPECTED: dict[str, dict[str, str] | None] = {
    "full": {"country": "US", "beta": "true", "age": "31", "platform": "ios"},
    "partial": {"country": "DE"},
    "unusable": None,
    "none": None,
}


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_exposures_carry_exactly_the_dimension_attributes(
    mode: str, admin: httpx.Client, assignment: ServiceProcess, exposure_service: ServiceProcess,
    broker: TansuBroker,
) -> None:  # fmt: skip
    sliced = create_running(admin, dimensions=["country", "beta", "age", "platform"])["key"]
    plain = create_running(admin)["key"]
    client = assay.Client(SDK_KEY, assignment.base_url, exposure_service.base_url, mode=mode,  # type: ignore[arg-type]
                          flush_interval=0.05, timeout=5.0)  # fmt: skip
    with client:
        for unit, attributes in UNIT_ATTRIBUTES.items():
            for key in (sliced, plain):
                assert client.get_variant(key, unit, attributes) in ("control", "treatment")
                assert client.get_variant(key, unit, {"country": "FR"}) is not None  # logged once, first values
        assert client.flush(timeout=30)
        stats = client.stats
    assert stats["exposures_logged"] == 8 and stats["sent"] == 8 and stats["rejected"] == 0, stats

    messages = read_topics(broker.bootstrap, [EXPOSURES], lambda m: m.value["experiment"] in (sliced, plain))
    carried = {(m.value["experiment"], m.key): m.value.get("attributes") for m in messages}
    assert len(messages) == len(carried) == 8
    assert {unit: carried[sliced, unit] for unit in UNIT_ATTRIBUTES} == EXPECTED
    assert all(carried[plain, unit] is None for unit in UNIT_ATTRIBUTES)  # an experiment without dimensions
