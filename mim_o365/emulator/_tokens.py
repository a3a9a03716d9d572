"""Signed JWT access tokens, as the identity platform issues them, and their validation."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class InvalidToken(Exception):  # noqa: N818 - mirrors the service's wording
    """A bearer token failed validation; ``reason`` is what the resource says."""

    def __init__(self, reason: str, *, kind: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class TokenIssuer:
    """Holds the tenant's signing key; issues and validates tokens."""

    def __init__(self) -> None:
        # A fresh key per emulator process: tokens from an earlier run must not validate.
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_der = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        self.kid = base64.urlsafe_b64encode(
            hashlib.sha256(str(public_der["n"]).encode()).digest()[:15]
        ).decode()
        self._jwk = {**public_der, "kid": self.kid, "use": "sig", "kty": "RSA", "alg": "RS256"}

    def jwks(self) -> dict[str, Any]:
        """The published key set."""
        return {"keys": [self._jwk]}

    def issue(self, claims: dict[str, Any]) -> str:
        """Sign ``claims``."""
        return jwt.encode(
            claims, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"}
        )

    def validate(self, token: str, *, audiences: tuple[str, ...], now: datetime) -> dict[str, Any]:
        """Claims of a token we issued, checked for signature, audience and expiry at ``now``.

        Raises:
            InvalidToken: with the reason a Microsoft resource would give.
        """
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                # times are checked below against the emulator's clock, not the machine's
                options={
                    "verify_exp": False,
                    "verify_aud": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            raise InvalidToken(
                "Invalid JWT token. The token is malformed or its signature is invalid."
            ) from None
        aud = str(claims.get("aud", "")).rstrip("/")
        if aud not in {a.rstrip("/") for a in audiences}:
            raise InvalidToken(
                f"The audience claim value is invalid '{aud}'.", kind="invalid_resource"
            )
        if int(claims.get("exp", 0)) <= int(now.timestamp()):
            raise InvalidToken("Lifetime validation failed, the token is expired.", kind="expired")
        return claims
