"""The error body every service answers with, and its OpenAPI documentation.

Every 4xx/5xx answer is `{"detail": "<a sentence a user can act on>"}`; a request that did not
validate (422) adds `errors`, one entry per invalid field. Routers declare the statuses they
can answer with `responses=` built from these helpers, so the published documents describe
the bodies clients really get (not FastAPI's default `HTTPValidationError`).

`http_error_handler` answers HTTP errors raised by routing, with a truthful `Allow` on a 405;
`document_security` declares the `Authorization: Bearer <key>` scheme in the document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

Responses = dict[int | str, dict[str, Any]]
BEARER_SCHEME = "bearerAuth"
CANDIDATE_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class FieldError(BaseModel):
    loc: str = Field(description="where the invalid value is, e.g. `body.variants.0.weight`")
    msg: str


class ErrorBody(BaseModel):
    detail: str = Field(description="what went wrong, and what to do about it")
    errors: list[FieldError] | None = Field(None, description="on 422: each invalid field (at most 20)")


def error(description: str) -> dict[str, Any]:
    """One documented error status answering `ErrorBody`."""
    return {"model": ErrorBody, "description": description}


AUTHENTICATED: Responses = {
    401: error("missing or unknown API key"),
    403: error("the key's role may not call this endpoint"),
    429: error("too many requests from this key; see Retry-After"),
}
INVALID: Responses = {422: error("the request does not validate; `errors` names each invalid field")}
TOO_LARGE: Responses = {413: error("the request body is larger than the service's byte limit")}
STORE_UNAVAILABLE: Responses = {503: error("the Redis store is unavailable; retry after Retry-After seconds")}


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path. Starlette's own 405 names only the
    methods of the first route that matched the path, so `OPTIONS /v1/experiments` would be
    told `Allow: POST` although `GET` works too. Each method is tried on a fresh scope with the
    app's own route matching (included routers match their nested routes themselves)."""
    scope = request.scope
    allowed = []
    for method in CANDIDATE_METHODS:
        probe = {"type": "http", "method": method, "path": scope["path"], "root_path": scope.get("root_path", ""),
                 "headers": [], "query_string": b"", "path_params": {}}  # fmt: skip
        if any(route.matches(probe)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


NOT_UTF8 = "the body is not UTF-8 encoded JSON"


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's own HTTPException answer, with a complete `Allow` header on a 405.

    A body that is not UTF-8 is a 422 like any other malformed JSON body (FastAPI would say
    400 "There was an error parsing the body", and only for the routes it parses itself)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        body = ErrorBody(detail=f"invalid request: body: {NOT_UTF8}", errors=[FieldError(loc="body", msg=NOT_UTF8)])
        return JSONResponse(body.model_dump(), status_code=422)
    if exc.status_code == 405:
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return await http_exception_handler(request, exc)


def document_security(app: FastAPI) -> None:
    """Declare the bearer-key scheme, and require it on every operation that documents a 401."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[BEARER_SCHEME] = {
            "type": "http", "scheme": "bearer",
            "description": "an API key: admin keys manage experiments and read scorecards, sdk keys assign "
                           "and log; a key of the wrong role gets 403",
        }  # fmt: skip
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                if "401" in operation.get("responses", {}):
                    operation["security"] = [{BEARER_SCHEME: []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
