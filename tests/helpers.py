"""Small helpers for talking to an emulator in tests."""

from __future__ import annotations

from typing import Any

import httpx

from mim_o365.emulator import Emulator

GRAPH = "https://graph.microsoft.com/.default"
EXCHANGE = "https://outlook.office365.com/.default"


def http(emulator: Emulator) -> httpx.Client:
    """An httpx client answered in-process by ``emulator``."""
    return httpx.Client(transport=emulator.transport(), base_url="https://emulator.test")


def token_response(
    client: httpx.Client,
    emulator: Emulator,
    client_id: str,
    secret: str,
    scope: str = GRAPH,
    tenant: str | None = None,
) -> httpx.Response:
    return client.post(
        f"/{tenant or emulator.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": scope,
        },
    )


def admin_headers(client: httpx.Client, emulator: Emulator) -> dict[str, str]:
    r = token_response(client, emulator, emulator.admin_client_id, emulator.admin_client_secret)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def claims(token: str) -> dict[str, Any]:
    import jwt

    return jwt.decode(token, options={"verify_signature": False})


def create_app(
    client: httpx.Client, headers: dict[str, str], name: str = "test app", **extra: Any
) -> dict[str, Any]:
    r = client.post(
        "/v1.0/applications",
        json={"displayName": name, "signInAudience": "AzureADMyOrg", **extra},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body
