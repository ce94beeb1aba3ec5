"""`POST /v1/assign` answered in plain ASGI when the call is well formed.

Product apps call `/v1/assign` on their own request path. FastAPI's routing, exception
middleware and request wrapper cost more per call than the assignment itself, so this layer
answers the common case before them: an sdk key and a body that validates. It sits inside
the shared request middleware, so request ids, rate limits, body-size limits, access logs
and HTTP metrics apply as to any route, and an unexpected error still becomes the usual 500.

Everything else (another path or method, a missing or wrong key, an invalid or oversized
body, a client that went away) goes on to the FastAPI route with what was read replayed,
and that route answers exactly as before (401, 403, 413, 422, ...). Both answer a valid call
with `assign.answer_one`, so there is one implementation of the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.assignment.api.assign import answer_one
from services.assignment.schemas import AssignRequest
from services.common.auth import IDENTIFIED, parse_bearer

PATH = "/v1/assign"
HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class RouteLabel:
    """Stands in for the route Starlette would have matched (`scope["route"]`)."""

    path: str


ROUTE = RouteLabel(PATH)


def _authorization(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"authorization":
            return str(value.decode("latin-1"))
    return None


def _replaying(messages: list[Message], error: Exception | None, receive: Receive) -> Receive:
    """`receive` as if nothing had been read: the recorded messages, then the error the read
    ended with (if any), then the real `receive`."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        if error is not None:
            raise error
        return await receive()

    return replay


class AssignFastPath:
    """ASGI middleware answering valid `POST /v1/assign` calls; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        try:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
        except Exception as exc:  # e.g. over the body-size limit: the route answers it
            await self.app(scope, _replaying(messages, exc, receive), send)
            return
        answer = await self._answer(scope, messages)
        if answer is None:
            await self.app(scope, _replaying(messages, None, receive), send)
            return
        headers = [*HEADERS, (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _answer(self, scope: Scope, messages: list[Message]) -> bytes | None:
        """The answer to a valid call by an sdk key; None for anything the route must answer."""
        if messages[-1]["type"] != "http.request":
            return None  # the client went away
        app = scope["app"]
        token = parse_bearer(_authorization(scope))
        if token is None:
            return None
        state = scope.setdefault("state", {})
        identified = state.get(IDENTIFIED)
        principal = identified[1] if identified is not None and identified[0] == token else None
        if principal is None:
            principal = app.state.keyring.identify(token)
        if principal is None or principal.role != "sdk":
            return None
        state["principal"] = principal
        raw = b"".join(message.get("body", b"") for message in messages)
        try:
            body = AssignRequest.model_validate_json(raw)
        except ValidationError:
            return None
        scope["route"] = ROUTE  # what the request middleware labels metrics and access logs with
        return await answer_one(app.state, body)
