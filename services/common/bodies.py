"""Hot-path JSON bodies: validated straight from bytes by pydantic (no FastAPI parameter
machinery), still documented in the OpenAPI schema and still answering 422 like any route."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)
REF_TEMPLATE = "#/components/schemas/{model}"


async def parse_body(request: Request, model: type[Model]) -> Model:
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_input=False)]
        raise RequestValidationError(errors) from exc


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads `model` with `parse_body`."""
    schema = {"$ref": REF_TEMPLATE.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def document_models(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add `models` (and what they reference) to the app's OpenAPI components."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            definition = model.model_json_schema(ref_template=REF_TEMPLATE)
            for name, nested in definition.pop("$defs", {}).items():
                components.setdefault(name, nested)
            components.setdefault(model.__name__, definition)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
