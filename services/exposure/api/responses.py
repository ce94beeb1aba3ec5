"""OpenAPI documentation shared by the ingestion routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from services.common.errors import AUTHENTICATED, error
from services.exposure.schemas import batch_schema

DOCUMENTED_MAX_ITEMS = 1000
INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "every accepted item is acked by the broker or fsynced to the local spool"},
    **AUTHENTICATED,
    413: error("more items than the per-request limit, or a body over the byte limit"),
    415: error("the body is not JSON"),
    422: error("the envelope is malformed (items are rejected one by one instead)"),
    503: error("the broker is away and the spool is full, or the registry is not loaded; see Retry-After"),
}


def request_body(envelope_field: str, item: type[BaseModel]) -> dict[str, Any]:
    schema = batch_schema(envelope_field, item, DOCUMENTED_MAX_ITEMS)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
