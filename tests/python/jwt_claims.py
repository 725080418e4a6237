"""Reading the claims of tokens the emulator issued (the tests check them, not just presence)."""

from __future__ import annotations

import base64
import json


def claims(token: str) -> dict:
    """The payload of a compact JWS, without checking the signature."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AssertionError(f"not a JWT (expected 3 dot-separated parts, got {len(parts)})")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))


def app_id(token_claims: dict) -> str | None:
    """The client the token was issued to: ``appid`` in v1 tokens, ``azp`` in v2 tokens."""
    return token_claims.get("appid") or token_claims.get("azp")
