"""App-only token checks with a client secret (is the secret accepted yet? does the token carry roles?)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import jwt
import requests

from mim_o365._clouds import Cloud
from mim_o365._errors import AuthenticationError
from mim_o365._gateways import _clients
from mim_o365._retry import Pending, Ready
from mim_o365._secrets import Secret

# Codes that mean "not yet": replication of the app, its service principal or the new secret.
PROPAGATING = {
    7000215: "the new client secret is not accepted yet",
    700016: "the application is not yet known to the token service",
    7000229: "the service principal is not yet known to the token service",
}


def token_roles(result: dict[str, Any]) -> list[str]:
    """The ``roles`` claim of a token answer (the token is not verified: it is our own, just issued)."""
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    return list(claims.get("roles", []))


class TokenProbe:
    """Asks the token service for app-only tokens, through MSAL as production does."""

    def __init__(
        self,
        cloud: Cloud,
        tenant: str,
        session_factory: Callable[[], requests.Session] | None = None,
    ) -> None:
        self.cloud = cloud
        self.tenant = tenant
        self._session_factory = session_factory or (lambda: _clients.PinnedSession(cloud))
        self.requests = 0

    def _acquire(self, client_id: str, secret: Secret, scope: str) -> dict[str, Any]:
        # A fresh MSAL app per attempt: MSAL replays a 400 answer from its own cache for a minute.
        app = _clients.confidential_client(
            self.cloud, self.tenant, client_id, secret, http_client=self._session_factory()
        )
        result: dict[str, Any] = app.acquire_token_for_client([scope])
        return result

    async def roles(self, client_id: str, secret: Secret, scope: str) -> Ready[list[str]] | Pending:
        """Roles in a new app-only token for ``scope``; Pending while the app or secret propagates."""
        got = await self.acquire(client_id, secret, scope)
        if isinstance(got, Pending):
            return got
        return Ready(token_roles(got.value))

    async def acquire(
        self, client_id: str, secret: Secret, scope: str
    ) -> Ready[dict[str, Any]] | Pending:
        """A new app-only token answer for ``scope`` (MSAL's dict); Pending while things propagate."""
        self.requests += 1
        try:
            result = await asyncio.to_thread(self._acquire, client_id, secret, scope)
        except ValueError as exc:
            # MSAL raises this from its constructor when the tenant's OpenID configuration is refused.
            raise AuthenticationError(
                f"tenant {self.tenant!r} is unknown to the token service of cloud {self.cloud.name!r}; check the "
                "tenant id and the cloud",
                error_code="AADSTS90002",
            ) from exc
        except requests.RequestException as exc:
            return Pending(f"token service unreachable ({exc.__class__.__name__})")
        if "access_token" in result:
            return Ready(result)
        codes = result.get("error_codes") or []
        for code in codes:
            if code in PROPAGATING:
                return Pending(PROPAGATING[code], code=f"AADSTS{code}")
        if result.get("error") == "temporarily_unavailable":
            return Pending("the token service is busy")
        code = f"AADSTS{codes[0]}" if codes else str(result.get("error"))
        description = str(result.get("error_description", "")).split(" Trace ID:")[0]
        raise AuthenticationError(
            f"the new secret was refused: {description}",
            error_code=code,
            correlation_id=result.get("correlation_id"),
        )
