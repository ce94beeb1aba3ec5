"""The exposure suite's client; the service, broker and readers come from tests/support."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from deploy.processes import ServiceProcess
from tests.support.services import SDK_KEY, client_for


@pytest.fixture
def ingest(exposure_service: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(exposure_service.base_url, SDK_KEY) as client:
        yield client
