"""The request envelope: JSON parsing and the `{"exposures": [...]}` / `{"events": [...]}` shape.

Problems here reject the whole request (4xx); problems inside an item do not.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import HTTPException, Request

from services.common.topics import Kind
from services.exposure.validation import ENVELOPE_FIELDS

MAX_FIELD_ECHO = 40


def check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(415, "send the body as JSON with 'Content-Type: application/json'")


def parse_json(body: bytes) -> Any:
    """orjson first (fast, strict). A body it refuses is parsed again by the standard library
    with NaN and Infinity allowed, so that the items holding them are rejected one by one
    instead of the whole request."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = str(exc)
    try:
        return json.loads(body.decode("utf-8"), parse_constant=float)
    except (ValueError, RecursionError):
        raise HTTPException(422, f"request body is not valid JSON: {problem[:200]}") from None


def items_of(payload: Any, kind: Kind, max_items: int) -> list[Any]:
    field = ENVELOPE_FIELDS[kind]
    shape = f'{{"{field}": [...]}}'
    if not isinstance(payload, dict):
        raise HTTPException(422, f"the body must be a JSON object like {shape}")
    unknown = sorted(str(name)[:MAX_FIELD_ECHO] for name in payload if name != field)
    if unknown:
        raise HTTPException(422, f"unknown field '{unknown[0]}': the body must look like {shape}")
    if field not in payload:
        raise HTTPException(422, f"'{field}' is required: the body must look like {shape}")
    items = payload[field]
    if not isinstance(items, list):
        raise HTTPException(422, f"'{field}' must be a list, as in {shape}")
    if len(items) > max_items:
        raise HTTPException(413, f"{len(items)} {field} in one request; send at most {max_items} per request")
    return items
