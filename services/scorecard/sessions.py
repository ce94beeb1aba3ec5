"""Browser sessions for the HTML pages: an HttpOnly cookie, never a key in the URL.

The cookie holds `<key fingerprint>.<expiry>.<HMAC>` signed with the admin key itself, so
any replica can verify it without shared state, and removing a key ends its sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

from services.common.auth import key_fingerprint

COOKIE_NAME = "assay_session"


def _signature(key: str, payload: str) -> str:
    return hmac.new(key.encode(), payload.encode(), hashlib.sha256).hexdigest()


def issue(admin_key: str, lifetime_seconds: float, now: float | None = None) -> str:
    expires = int((now or time.time()) + lifetime_seconds)
    payload = f"{key_fingerprint('admin', admin_key)}.{expires}"
    return f"{payload}.{_signature(admin_key, payload)}"


def verify(token: str, admin_keys: Iterable[str], now: float | None = None) -> str | None:
    """The key fingerprint of a valid, unexpired session; None otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or len(token) > 200:
        return None
    fingerprint, expires, signature = parts
    if int(expires) < (now or time.time()):
        return None
    payload = f"{fingerprint}.{expires}"
    valid = None
    for key in admin_keys:
        if key_fingerprint("admin", key) == fingerprint and hmac.compare_digest(_signature(key, payload), signature):
            valid = fingerprint
    return valid
