"""The scorecard suite's owner client; the service and its results directory come from tests/support."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from deploy.processes import ServiceProcess
from tests.support.services import ADMIN_KEY, client_for


@pytest.fixture
def owner(scorecard: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(scorecard.base_url, ADMIN_KEY) as client:
        yield client
