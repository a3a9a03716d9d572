"""The emulated Microsoft identity platform (v2.0): discovery, token endpoint, device code.

Wire facts: shared/reference/protocol.md §2.1-2.6 and §1.12. In-process, no sleeping: time moves
only through the FakeClock.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jwt
import pytest

from mim_o365 import FakeClock
from mim_o365._wellknown import EXCHANGE_APP_ID, FULL_ACCESS_AS_APP_ID
from mim_o365.emulator import Emulator
from tests.helpers import (
    EXCHANGE,
    GRAPH,
    admin_headers,
    claims,
    create_app,
    http,
    token_response,
)

BASE = "https://emulator.test"
AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
OPERATOR_SCOPE = "https://graph.microsoft.com/.default offline_access openid profile"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.fixture
def client(emulator: Emulator) -> httpx.Client:
    return http(emulator)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_client_app(
    client: httpx.Client,
    h: dict[str, str],
    *,
    with_sp: bool = True,
    password: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str | None, str]:
    """A fresh app (via Graph, as the admin): (application, service principal id, secret)."""
    app = create_app(client, h, name="identity test app")
    sp_id = None
    if with_sp:
        sp = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=h)
        assert sp.status_code == 201, sp.text
        sp_id = sp.json()["id"]
    body = {"passwordCredential": password} if password is not None else {}
    pw = client.post(f"/v1.0/applications/{app['id']}/addPassword", json=body, headers=h)
    assert pw.status_code == 200, pw.text
    return app, sp_id, pw.json()["secretText"]


def _sp_id(client: httpx.Client, h: dict[str, str], app_id: str) -> str:
    r = client.get(f"/v1.0/servicePrincipals(appId='{app_id}')", headers=h)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _assert_aad_error(
    r: httpx.Response, status: int, error: str | None, code: int
) -> dict[str, Any]:
    """The identity platform's error JSON (§2.1) with ``code``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    if error is not None:
        assert body["error"] == error, body
    assert body["error_codes"] == [code], body
    assert body["error_description"].startswith(f"AADSTS{code}:"), body
    return body


# --- discovery ------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["guid", "domain"])
def test_openid_configuration_for_tenant(client: httpx.Client, emulator: Emulator, by: str) -> None:
    tenant = emulator.tenant_id if by == "guid" else "contoso.onmicrosoft.com"
    r = client.get(f"/{tenant}/v2.0/.well-known/openid-configuration")
    assert r.status_code == 200, r.text
    assert "max-age=86400" in r.headers["cache-control"]
    doc = r.json()
    tid = emulator.tenant_id
    # MSAL derives the tenant from token_endpoint's path: always the GUID, even when asked by domain
    assert doc["token_endpoint"] == f"{BASE}/{tid}/oauth2/v2.0/token"
    assert doc["issuer"] == f"{BASE}/{tid}/v2.0"
    assert doc["device_authorization_endpoint"] == f"{BASE}/{tid}/oauth2/v2.0/devicecode"
    assert doc["authorization_endpoint"] == f"{BASE}/{tid}/oauth2/v2.0/authorize"
    for key in ("end_session_endpoint", "userinfo_endpoint", "tenant_region_scope", "msgraph_host"):
        assert doc[key], key
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    assert urlsplit(doc["jwks_uri"]).netloc == "emulator.test"


def test_jwks_key_verifies_issued_token_signature(client: httpx.Client, emulator: Emulator) -> None:
    doc = client.get(f"/{emulator.tenant_domain}/v2.0/.well-known/openid-configuration").json()
    keys = client.get(doc["jwks_uri"])
    assert keys.status_code == 200, keys.text
    jwks = keys.json()["keys"]
    assert jwks, "empty key set"
    assert all("d" not in k and "p" not in k for k in jwks), "private key material published"

    token = token_response(client, emulator, emulator.admin_client_id, emulator.admin_client_secret)
    access = token.json()["access_token"]
    kid = jwt.get_unverified_header(access)["kid"]
    jwk = next(k for k in jwks if k["kid"] == kid)
    key = jwt.PyJWK(jwk)
    verified = jwt.decode(
        access,
        key,
        algorithms=["RS256"],
        audience="https://graph.microsoft.com",
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert verified["tid"] == emulator.tenant_id

    # a token signed by any other key does not verify against the published one
    forged = jwt.encode(
        {**verified},
        jwt.PyJWK(_other_private_jwk()).key,
        algorithm="RS256",
        headers={"kid": kid},
    )
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            forged, key, algorithms=["RS256"], options={"verify_aud": False, "verify_exp": False}
        )


def _other_private_jwk() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return RSAAlgorithm.to_jwk(private, as_dict=True)


def test_openid_configuration_unknown_tenant_is_invalid_tenant(client: httpx.Client) -> None:
    unknown = "5c1f6a0e-2d7b-4c65-9b0e-3b1d4f5a6e7c"
    r = client.get(f"/{unknown}/v2.0/.well-known/openid-configuration")
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "invalid_tenant"
    assert "AADSTS90002" in body["error_description"]
    assert unknown in body["error_description"]
    assert body["error_codes"] == [90002]


def test_openid_configuration_malformed_tenant_is_900023(client: httpx.Client) -> None:
    r = client.get("/not a tenant!/v2.0/.well-known/openid-configuration")
    assert r.status_code == 400
    body = r.json()
    assert "AADSTS900023" in body["error_description"]
    assert body["error_codes"] == [900023]


def test_instance_discovery_lists_our_host(client: httpx.Client) -> None:
    r = client.get(
        "/common/discovery/instance",
        params={"api-version": "1.1", "authorization_endpoint": f"{BASE}/common/oauth2/authorize"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["tenant_discovery_endpoint"] == f"{BASE}/common/v2.0/.well-known/openid-configuration"
    )
    assert body["metadata"]
    assert any("emulator.test" in m["aliases"] for m in body["metadata"])
    # the endpoint it names answers
    assert client.get(body["tenant_discovery_endpoint"]).status_code == 200


# --- client credentials ---------------------------------------------------------------------


def test_client_credentials_graph_token(client: httpx.Client, emulator: Emulator) -> None:
    r = token_response(client, emulator, emulator.admin_client_id, emulator.admin_client_secret)
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0
    assert isinstance(body["ext_expires_in"], int)
    assert "refresh_token" not in body
    c = claims(body["access_token"])
    assert c["aud"] == "https://graph.microsoft.com"
    assert c["tid"] == emulator.tenant_id
    assert c["appid"] == emulator.admin_client_id
    assert c["idtyp"] == "app"
    assert c["exp"] - c["iat"] == body["expires_in"]
    assert "Application.ReadWrite.All" in c["roles"]
    assert "AppRoleAssignment.ReadWrite.All" in c["roles"]
    assert "scp" not in c
    h = {"Authorization": f"Bearer {body['access_token']}"}
    assert c["oid"] == _sp_id(client, h, emulator.admin_client_id)


def test_client_credentials_with_http_basic_auth(client: httpx.Client, emulator: Emulator) -> None:
    user = quote(emulator.admin_client_id, safe="")
    pw = quote(emulator.admin_client_secret, safe="")
    basic = base64.b64encode(f"{user}:{pw}".encode()).decode()
    r = client.post(
        f"/{emulator.tenant_id}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": GRAPH},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["appid"] == emulator.admin_client_id

    wrong = base64.b64encode(f"{user}:{pw}x".encode()).decode()
    r = client.post(
        f"/{emulator.tenant_id}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "scope": GRAPH},
        headers={"Authorization": f"Basic {wrong}"},
    )
    _assert_aad_error(r, 401, "invalid_client", 7000215)


def test_client_credentials_exchange_token_for_admin(
    client: httpx.Client, emulator: Emulator
) -> None:
    r = token_response(
        client, emulator, emulator.admin_client_id, emulator.admin_client_secret, EXCHANGE
    )
    assert r.status_code == 200, r.text
    c = claims(r.json()["access_token"])
    assert c["aud"] == "https://outlook.office365.com"
    assert c["roles"] == ["Exchange.ManageAsApp"]
    assert c["iss"] == f"https://sts.windows.net/{emulator.tenant_id}/"


def test_client_credentials_by_tenant_domain(client: httpx.Client, emulator: Emulator) -> None:
    r = token_response(
        client,
        emulator,
        emulator.admin_client_id,
        emulator.admin_client_secret,
        tenant="contoso.onmicrosoft.com",
    )
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["tid"] == emulator.tenant_id


# --- error shapes ---------------------------------------------------------------------------


def test_wrong_secret_error_shape(client: httpx.Client, emulator: Emulator) -> None:
    correlation = "0b7f5d4e-1c2a-4e3f-9a8b-7c6d5e4f3a2b"
    r = client.post(
        f"/{emulator.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emulator.admin_client_id,
            "client_secret": "not-the-secret",
            "scope": GRAPH,
        },
        headers={"client-request-id": correlation},
    )
    body = _assert_aad_error(r, 401, "invalid_client", 7000215)
    description = body["error_description"]
    assert emulator.admin_client_id in description
    assert "Trace ID" in description
    assert "Correlation ID" in description
    assert body["correlation_id"] == correlation
    assert f"Correlation ID: {correlation}" in description
    assert GUID.match(body["trace_id"])
    assert f"Trace ID: {body['trace_id']}" in description
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$", body["timestamp"]), body["timestamp"]
    assert body["timestamp"].startswith(emulator.clock.now().strftime("%Y-%m-%d"))


def test_error_description_lines_follow_reference_format(
    client: httpx.Client, emulator: Emulator
) -> None:
    # §2.1: "AADSTSnnnn: ...\r\nTrace ID: ...\r\nCorrelation ID: ...\r\nTimestamp: ..."
    r = token_response(client, emulator, emulator.admin_client_id, "nope")
    body = r.json()
    lines = body["error_description"].split("\r\n")
    assert len(lines) == 4, body["error_description"]
    assert lines[0].startswith("AADSTS7000215: ")
    assert lines[1] == f"Trace ID: {body['trace_id']}"
    assert lines[2] == f"Correlation ID: {body['correlation_id']}"
    assert lines[3] == f"Timestamp: {body['timestamp']}"


def test_correlation_id_is_generated_without_header(
    client: httpx.Client, emulator: Emulator
) -> None:
    a = token_response(client, emulator, emulator.admin_client_id, "nope").json()
    b = token_response(client, emulator, emulator.admin_client_id, "nope").json()
    assert GUID.match(a["correlation_id"])
    assert a["correlation_id"] != b["correlation_id"]
    assert a["trace_id"] != b["trace_id"]


def test_expired_secret_is_7000222(
    client: httpx.Client, emulator: Emulator, clock: FakeClock
) -> None:
    h = admin_headers(client, emulator)
    end = clock.now() + timedelta(days=1)
    app, _, secret = _new_client_app(client, h, password={"endDateTime": _iso(end)})
    assert token_response(client, emulator, app["appId"], secret, EXCHANGE).status_code == 200
    clock.advance(timedelta(days=2).total_seconds())
    r = token_response(client, emulator, app["appId"], secret, EXCHANGE)
    body = _assert_aad_error(r, 401, "invalid_client", 7000222)
    assert app["appId"] in body["error_description"]


def test_secret_not_yet_valid_is_7000215(
    client: httpx.Client, emulator: Emulator, clock: FakeClock
) -> None:
    h = admin_headers(client, emulator)
    start = clock.now() + timedelta(days=1)
    app, _, secret = _new_client_app(
        client,
        h,
        password={"startDateTime": _iso(start), "endDateTime": _iso(start + timedelta(days=30))},
    )
    r = token_response(client, emulator, app["appId"], secret, EXCHANGE)
    _assert_aad_error(r, 401, "invalid_client", 7000215)
    clock.advance(timedelta(days=1, seconds=1).total_seconds())
    assert token_response(client, emulator, app["appId"], secret, EXCHANGE).status_code == 200


def test_unknown_client_id_is_700016(client: httpx.Client, emulator: Emulator) -> None:
    unknown = "7d3c1b2a-0f9e-4d8c-b7a6-5e4d3c2b1a09"
    r = token_response(client, emulator, unknown, "whatever")
    body = _assert_aad_error(r, 400, "unauthorized_client", 700016)
    assert unknown in body["error_description"]
    assert emulator.tenant_id in body["error_description"]


def test_app_without_service_principal_is_7000229(client: httpx.Client, emulator: Emulator) -> None:
    h = admin_headers(client, emulator)
    app, _, secret = _new_client_app(client, h, with_sp=False)
    r = token_response(client, emulator, app["appId"], secret)
    _assert_aad_error(r, 401, "invalid_client", 7000229)


def test_missing_secret_is_7000218(client: httpx.Client, emulator: Emulator) -> None:
    r = client.post(
        f"/{emulator.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": emulator.admin_client_id,
            "scope": GRAPH,
        },
    )
    assert 400 <= r.status_code < 500
    body = r.json()
    assert body["error_codes"] == [7000218]
    assert body["error_description"].startswith("AADSTS7000218:")
    assert "client_secret" in body["error_description"]


@pytest.mark.parametrize(
    "tenant", ["5c1f6a0e-2d7b-4c65-9b0e-3b1d4f5a6e7c", "fabrikam.onmicrosoft.com"]
)
def test_unknown_tenant_at_token_endpoint_is_90002(
    client: httpx.Client, emulator: Emulator, tenant: str
) -> None:
    r = token_response(
        client, emulator, emulator.admin_client_id, emulator.admin_client_secret, tenant=tenant
    )
    body = _assert_aad_error(r, 400, None, 90002)
    assert tenant in body["error_description"]


def test_client_credentials_over_common_is_9001023(
    client: httpx.Client, emulator: Emulator
) -> None:
    r = token_response(
        client, emulator, emulator.admin_client_id, emulator.admin_client_secret, tenant="common"
    )
    _assert_aad_error(r, 400, None, 9001023)


def test_scope_without_default_is_1002012(client: httpx.Client, emulator: Emulator) -> None:
    scope = "https://graph.microsoft.com/User.Read.All"
    r = token_response(
        client, emulator, emulator.admin_client_id, emulator.admin_client_secret, scope
    )
    body = _assert_aad_error(r, 400, "invalid_scope", 1002012)
    assert scope in body["error_description"]


def test_unknown_resource_is_500011(client: httpx.Client, emulator: Emulator) -> None:
    r = token_response(
        client,
        emulator,
        emulator.admin_client_id,
        emulator.admin_client_secret,
        "https://nothing.example/.default",
    )
    body = _assert_aad_error(r, 400, "invalid_resource", 500011)
    assert "https://nothing.example" in body["error_description"]


def test_disabled_service_principal_is_7000112(client: httpx.Client, emulator: Emulator) -> None:
    h = admin_headers(client, emulator)
    app, _, secret = _new_client_app(client, h)
    sp = emulator.directory.sp_by_app_id(app["appId"])
    assert sp is not None
    sp.account_enabled = False
    r = token_response(client, emulator, app["appId"], secret, EXCHANGE)
    body = _assert_aad_error(r, 400, "unauthorized_client", 7000112)
    assert app["appId"] in body["error_description"]


def test_removed_secret_is_7000215(client: httpx.Client, emulator: Emulator) -> None:
    h = admin_headers(client, emulator)
    app, _, secret = _new_client_app(client, h)
    assert token_response(client, emulator, app["appId"], secret, EXCHANGE).status_code == 200
    key_id = client.get(f"/v1.0/applications/{app['id']}", headers=h).json()["passwordCredentials"][
        0
    ]["keyId"]
    r = client.post(
        f"/v1.0/applications/{app['id']}/removePassword", json={"keyId": key_id}, headers=h
    )
    assert r.status_code == 204, r.text
    r = token_response(client, emulator, app["appId"], secret, EXCHANGE)
    _assert_aad_error(r, 401, "invalid_client", 7000215)


def test_scope_resource_is_case_insensitive(client: httpx.Client, emulator: Emulator) -> None:
    # URIs' hosts are case-insensitive: the token's aud is the resource's own spelling, so Graph
    # accepts it
    r = token_response(
        client,
        emulator,
        emulator.admin_client_id,
        emulator.admin_client_secret,
        "https://GRAPH.Microsoft.com/.default",
    )
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["aud"] == "https://graph.microsoft.com"
    h = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/v1.0/organization", headers=h).status_code == 200


def test_unsupported_grant_is_70003(client: httpx.Client, emulator: Emulator) -> None:
    r = client.post(
        f"/{emulator.tenant_id}/oauth2/v2.0/token",
        data={"grant_type": "password", "client_id": emulator.admin_client_id, "scope": GRAPH},
    )
    body = _assert_aad_error(r, 400, "unsupported_grant_type", 70003)
    assert "password" in body["error_description"]


# --- token lifetime and consent -------------------------------------------------------------


def test_graph_token_expires_with_the_clock(
    client: httpx.Client, emulator: Emulator, clock: FakeClock
) -> None:
    h = admin_headers(client, emulator)
    assert client.get("/v1.0/organization", headers=h).status_code == 200
    clock.advance(3500)
    assert client.get("/v1.0/organization", headers=h).status_code == 200
    clock.advance(100)
    r = client.get("/v1.0/organization", headers=h)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "InvalidAuthenticationToken"
    # a fresh token works again
    assert (
        client.get("/v1.0/organization", headers=admin_headers(client, emulator)).status_code == 200
    )


def test_token_of_another_emulator_is_rejected(client: httpx.Client, emulator: Emulator) -> None:
    other = Emulator(seed=1234, clock=emulator.clock)
    foreign = admin_headers(http(other), other)
    r = client.get("/v1.0/organization", headers=foreign)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_consent_appears_in_new_tokens_only(client: httpx.Client, emulator: Emulator) -> None:
    h = admin_headers(client, emulator)
    app, sp_id, secret = _new_client_app(client, h)
    before = token_response(client, emulator, app["appId"], secret, EXCHANGE)
    assert before.status_code == 200, before.text
    c = claims(before.json()["access_token"])
    assert "roles" not in c
    assert c["oid"] == sp_id
    assert c["aud"] == "https://outlook.office365.com"

    exo_sp = _sp_id(client, h, EXCHANGE_APP_ID)
    r = client.post(
        f"/v1.0/servicePrincipals/{exo_sp}/appRoleAssignedTo",
        json={"principalId": sp_id, "resourceId": exo_sp, "appRoleId": FULL_ACCESS_AS_APP_ID},
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert FULL_ACCESS_AS_APP_ID == "dc890d15-9560-4a4c-9b7f-a736ec74ec40"

    after = token_response(client, emulator, app["appId"], secret, EXCHANGE)
    assert after.status_code == 200, after.text
    assert claims(after.json()["access_token"])["roles"] == ["full_access_as_app"]
    # the old token is unchanged, and a Graph token of the same app has no roles
    assert "roles" not in claims(before.json()["access_token"])
    graph = token_response(client, emulator, app["appId"], secret, GRAPH)
    assert "roles" not in claims(graph.json()["access_token"])


# --- device code (operator sign-in) ---------------------------------------------------------


def _devicecode(
    client: httpx.Client,
    emulator: Emulator,
    client_id: str = AZURE_CLI,
    scope: str = OPERATOR_SCOPE,
) -> httpx.Response:
    return client.post(
        f"/{emulator.tenant_id}/oauth2/v2.0/devicecode",
        data={"client_id": client_id, "scope": scope},
    )


def _poll(client: httpx.Client, emulator: Emulator, device_code: str) -> httpx.Response:
    return client.post(
        f"/{emulator.tenant_id}/oauth2/v2.0/token",
        data={"grant_type": DEVICE_GRANT, "client_id": AZURE_CLI, "device_code": device_code},
    )


def test_device_code_flow(client: httpx.Client, emulator: Emulator) -> None:
    r = _devicecode(client, emulator)
    assert r.status_code == 200, r.text
    flow = r.json()
    for key in ("user_code", "device_code", "verification_uri", "message"):
        assert isinstance(flow[key], str)
        assert flow[key], key
    assert isinstance(flow["expires_in"], int)
    assert isinstance(flow["interval"], int)
    assert flow["user_code"] in flow["message"]
    assert flow["verification_uri"] in flow["message"]

    t = _poll(client, emulator, flow["device_code"])
    assert t.status_code == 200, t.text
    tok = t.json()
    assert tok["token_type"] == "Bearer"
    for key in ("access_token", "refresh_token", "id_token", "client_info", "scope"):
        assert tok[key], key
    c = claims(tok["access_token"])
    assert c["upn"] == "admin@contoso.onmicrosoft.com"
    assert c["aud"] == "https://graph.microsoft.com"
    assert c["tid"] == emulator.tenant_id
    assert c["appid"] == AZURE_CLI
    assert "Application.ReadWrite.All" in c["scp"].split()
    assert "AppRoleAssignment.ReadWrite.All" in c["scp"].split()
    assert "roles" not in c

    ident = claims(tok["id_token"])
    assert ident["aud"] == AZURE_CLI
    assert ident["preferred_username"] == "admin@contoso.onmicrosoft.com"
    assert ident["tid"] == emulator.tenant_id
    assert ident["iss"] == f"{BASE}/{emulator.tenant_id}/v2.0"

    info = base64.urlsafe_b64decode(tok["client_info"] + "=" * (-len(tok["client_info"]) % 4))
    assert json.loads(info) == {"uid": c["oid"], "utid": emulator.tenant_id}

    # the delegated token is accepted by Graph
    me = client.get(
        "/v1.0/organization", headers={"Authorization": f"Bearer {tok['access_token']}"}
    )
    assert me.status_code == 200, me.text

    # a device code is good for one sign-in only
    again = _poll(client, emulator, flow["device_code"])
    _assert_aad_error(again, 400, "invalid_grant", again.json()["error_codes"][0])


def test_device_code_pending_polls(client: httpx.Client, emulator: Emulator) -> None:
    emulator.knobs.device_code_pending_polls = 2
    flow = _devicecode(client, emulator).json()
    for _ in range(2):
        r = _poll(client, emulator, flow["device_code"])
        assert r.status_code == 400
        assert r.json()["error"] == "authorization_pending"
    r = _poll(client, emulator, flow["device_code"])
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["upn"] == "admin@contoso.onmicrosoft.com"


def test_device_code_with_bare_graph_scopes(client: httpx.Client, emulator: Emulator) -> None:
    # MSAL lets callers write Graph permissions without the resource ("User.Read"): the identity
    # platform reads them as Microsoft Graph scopes
    scope = "Application.ReadWrite.All Organization.Read.All offline_access openid profile"
    flow = _devicecode(client, emulator, scope=scope).json()
    r = _poll(client, emulator, flow["device_code"])
    assert r.status_code == 200, r.text
    tok = r.json()
    c = claims(tok["access_token"])
    assert c["aud"] in ("00000003-0000-0000-c000-000000000000", "https://graph.microsoft.com")
    assert sorted(c["scp"].split()) == ["Application.ReadWrite.All", "Organization.Read.All"]
    assert set(tok["scope"].split()) >= {"Application.ReadWrite.All", "Organization.Read.All"}
    h = {"Authorization": f"Bearer {tok['access_token']}"}
    assert client.get("/v1.0/organization", headers=h).status_code == 200


def test_device_code_with_odd_scopes_never_500(client: httpx.Client, emulator: Emulator) -> None:
    for scope in (
        "00000003-0000-0000-c000-000000000000",
        "",
        "openid",
        "https://nothing.example/x",
    ):
        flow = _devicecode(client, emulator, scope=scope)
        if flow.status_code != 200:
            assert 400 <= flow.status_code < 500, (scope, flow.text)
            continue
        r = _poll(client, emulator, flow.json()["device_code"])
        assert r.status_code in (200, 400), (scope, r.text)


def test_unknown_device_code_is_invalid_grant(client: httpx.Client, emulator: Emulator) -> None:
    r = _poll(client, emulator, "no-such-device-code")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


def test_devicecode_for_unknown_client_is_700016(client: httpx.Client, emulator: Emulator) -> None:
    unknown = "3e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b"
    r = _devicecode(client, emulator, client_id=unknown)
    body = _assert_aad_error(r, 400, "unauthorized_client", 700016)
    assert unknown in body["error_description"]
    # a confidential (non-public) app is not a device-code client either
    r = _devicecode(client, emulator, client_id=emulator.admin_client_id)
    _assert_aad_error(r, 400, None, 700016)


def test_refresh_token_grant(client: httpx.Client, emulator: Emulator, clock: FakeClock) -> None:
    flow = _devicecode(client, emulator).json()
    first = _poll(client, emulator, flow["device_code"]).json()
    clock.advance(3600)
    r = client.post(
        f"/{emulator.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "refresh_token",
            "client_id": AZURE_CLI,
            "refresh_token": first["refresh_token"],
            "scope": OPERATOR_SCOPE,
        },
    )
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["access_token"] != first["access_token"]
    c = claims(tok["access_token"])
    assert c["upn"] == "admin@contoso.onmicrosoft.com"
    assert c["exp"] > int(clock.now().timestamp())
    h = {"Authorization": f"Bearer {tok['access_token']}"}
    assert client.get("/v1.0/organization", headers=h).status_code == 200


def test_bogus_refresh_token_is_invalid_grant(client: httpx.Client, emulator: Emulator) -> None:
    r = client.post(
        f"/{emulator.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "refresh_token",
            "client_id": AZURE_CLI,
            "refresh_token": "0.bogus",
            "scope": OPERATOR_SCOPE,
        },
    )
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "invalid_grant"
    assert body["error_description"].startswith(f"AADSTS{body['error_codes'][0]}:")


# --- routing --------------------------------------------------------------------------------


def test_get_on_token_endpoint_is_4xx_json(client: httpx.Client, emulator: Emulator) -> None:
    r = client.get(f"/{emulator.tenant_id}/oauth2/v2.0/token")
    assert 400 <= r.status_code < 500
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]


def test_unknown_identity_path_is_404_json(client: httpx.Client, emulator: Emulator) -> None:
    r = client.get(f"/{emulator.tenant_id}/oauth2/v2.0/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]


def test_token_endpoint_never_500_on_odd_input(client: httpx.Client, emulator: Emulator) -> None:
    url = f"/{emulator.tenant_id}/oauth2/v2.0/token"
    odd: list[dict[str, Any]] = [
        {"content": b""},
        {"content": b"\xff\xfe\x00garbage"},
        {"data": {"grant_type": "client_credentials"}},
        {
            "data": {"grant_type": "client_credentials", "scope": GRAPH},
            "headers": {"Authorization": "Basic !!!not-base64"},
        },
        {"data": {"grant_type": DEVICE_GRANT, "client_id": AZURE_CLI}},
        {"data": {"grant_type": "refresh_token", "client_id": AZURE_CLI}},
    ]
    for kwargs in odd:
        r = client.post(url, **kwargs)
        assert 400 <= r.status_code < 500, (kwargs, r.status_code, r.text)
        assert r.json()["error"], kwargs
