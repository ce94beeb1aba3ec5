"""API-key authentication: `Authorization: Bearer <key>`, admin and sdk roles.

Keys are compared in constant time against every configured key, and only a short
fingerprint (`key_id`) ever leaves this module: keys are never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from fastapi import HTTPException, Request

Role = Literal["admin", "sdk"]
# Request-state entry: (bearer token, its principal or None) when the rate limiter has
# already identified the caller, so that the key is hashed and compared once per request.
IDENTIFIED = "identified"


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    key_id: str


def key_fingerprint(role: str, key: str) -> str:
    return f"{role}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


class KeyRing:
    """Configured keys by role; `identify` never short-circuits on a match."""

    def __init__(self, admin_keys: Iterable[str], sdk_keys: Iterable[str]) -> None:
        self._entries = [
            (hashlib.sha256(k.encode()).digest(), Principal("admin", key_fingerprint("admin", k))) for k in admin_keys
        ] + [(hashlib.sha256(k.encode()).digest(), Principal("sdk", key_fingerprint("sdk", k))) for k in sdk_keys]

    def identify(self, presented: str) -> Principal | None:
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        found: Principal | None = None
        for known, principal in self._entries:
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def bearer_token(request: Request) -> str | None:
    return parse_bearer(request.headers.get("authorization"))


def parse_bearer(header: str | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header value, if there is one."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def authenticate(request: Request) -> Principal:
    token = bearer_token(request)
    if token is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    identified: tuple[str | None, Principal | None] | None = getattr(request.state, IDENTIFIED, None)
    if identified is not None and identified[0] == token:
        principal = identified[1]
    else:
        keyring: KeyRing = request.app.state.keyring
        principal = keyring.identify(token)
    if principal is None:
        raise _unauthorized("unknown API key")
    request.state.principal = principal
    return principal


def require_roles(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency factory: the caller's key must have one of `roles`.

    The dependency is `async` although it does no I/O: FastAPI runs plain `def`
    dependencies in a thread pool, a costly hop on every request.
    """
    allowed = " or ".join(roles)

    async def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        if principal.role not in roles:
            raise HTTPException(403, f"this endpoint needs an {allowed} key")
        return principal

    return dependency


require_admin = require_roles("admin")
require_sdk = require_roles("sdk")
