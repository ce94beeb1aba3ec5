"""OpenAPI documentation shared by the ingestion routes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from services.exposure.schemas import batch_schema

DOCUMENTED_MAX_ITEMS = 1000
INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "every accepted item is acked by the broker or fsynced to the local spool"},
    413: {"description": "more items than the per-request limit, or a body over the byte limit"},
    415: {"description": "the body is not JSON"},
    422: {"description": "the envelope is malformed (items are rejected one by one instead)"},
    503: {"description": "the broker is away and the spool is full, or the registry is not loaded; "
                         "see Retry-After"},
}  # fmt: skip


def request_body(envelope_field: str, item: type[BaseModel]) -> dict[str, Any]:
    schema = batch_schema(envelope_field, item, DOCUMENTED_MAX_ITEMS)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
