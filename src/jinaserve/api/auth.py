"""Optional API keys (`--api-key`, several allowed). Compared in constant time; with no key set the
Authorization header is ignored entirely (clients send `Bearer None` or nothing)."""

from __future__ import annotations

import hmac

from fastapi import Request

from ..errors import AuthError


async def check_api_key(request: Request) -> None:
    # async (it never blocks): FastAPI runs a plain `def` dependency in its thread pool, a thread
    # hand-off per request for a few microseconds of work.
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization")
    if not header:
        err = AuthError("Missing API key: send 'Authorization: Bearer <key>'")
        err.code = "AUTH_MISSING_API_KEY"
        raise err
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        err = AuthError("Malformed Authorization header: expected 'Bearer <key>'")
        err.code = "AUTH_INVALID_FORMAT"
        raise err
    presented = token.strip().encode()
    matched = False
    for key in keys:  # check every key so timing does not depend on which one matched
        matched |= hmac.compare_digest(presented, key.encode())
    if not matched:
        raise AuthError("Invalid API key")
