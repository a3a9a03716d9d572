"""Key Vault secrets in the emulator: the challenge handshake, access policies and the secret REST
subset azure-keyvault-secrets uses. In process, through ``http(emulator)``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from azure.keyvault.secrets._shared import HttpChallenge

from mim_o365 import FakeClock
from mim_o365.emulator import Emulator
from mim_o365.emulator._http.keyvault import API_VERSIONS
from mim_o365.emulator._persist import dumps, loads
from mim_o365.emulator._seed import KEYVAULT_APP_ID
from tests.helpers import admin_headers, claims, create_app, http, token_response

JSON = dict[str, Any]
KV = "https://vault.azure.net/.default"
VAULT = "/keyvault/contoso-vault"
API = {"api-version": "7.5"}
VERSION = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def client(emulator: Emulator) -> httpx.Client:
    return http(emulator)


def kv_headers(client: httpx.Client, emulator: Emulator, client_id: str, secret: str) -> JSON:
    r = token_response(client, emulator, client_id, secret, scope=KV)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture
def h(client: httpx.Client, emulator: Emulator) -> JSON:
    return kv_headers(client, emulator, emulator.admin_client_id, emulator.admin_client_secret)


def new_app(client: httpx.Client, emulator: Emulator) -> tuple[str, str, str]:
    """A new app with a secret and a service principal: (client id, secret, SP object id)."""
    gh = admin_headers(client, emulator)
    app = create_app(client, gh, "vault outsider")
    r = client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=gh)
    assert r.status_code == 200, r.text
    secret = r.json()["secretText"]
    r = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=gh)
    assert r.status_code == 201, r.text
    return app["appId"], secret, r.json()["id"]


def put(client: httpx.Client, h: JSON, name: str, body: JSON, **params: str) -> httpx.Response:
    return client.put(f"{VAULT}/secrets/{name}", json=body, headers=h, params={**API, **params})


def kv_error(r: httpx.Response, status: int, code: str) -> JSON:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error: JSON = r.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


# --- seed -----------------------------------------------------------------------------------------


def test_seeded_vault_and_key_vault_service_principal(emulator: Emulator) -> None:
    state = emulator.directory.state
    vault = state.vaults["contoso-vault"]
    admin_sp = emulator.directory.sp_by_app_id(emulator.admin_client_id)
    admin_user = emulator.directory.get_user(f"admin@{emulator.tenant_domain}")
    assert admin_sp is not None
    assert set(vault.access) == {admin_sp.id, admin_user.id}
    assert {"get", "set", "list", "delete"} <= set(vault.access[admin_sp.id])
    kv = emulator.directory.sp_by_app_id(KEYVAULT_APP_ID)
    assert kv is not None
    assert kv.display_name == "Azure Key Vault"
    for name in (
        "https://vault.azure.net",
        "https://vault.usgovcloudapi.net",
        "https://vault.azure.cn",
    ):
        assert name in kv.service_principal_names


def test_token_for_key_vault_has_its_audience(client: httpx.Client, emulator: Emulator) -> None:
    r = token_response(client, emulator, emulator.admin_client_id, emulator.admin_client_secret, KV)
    assert r.status_code == 200, r.text
    c = claims(r.json()["access_token"])
    assert c["aud"] == "https://vault.azure.net"
    assert c["tid"] == emulator.tenant_id


# --- the challenge --------------------------------------------------------------------------------


def test_request_without_token_gets_the_bearer_challenge(
    client: httpx.Client, emulator: Emulator
) -> None:
    r = client.put(f"{VAULT}/secrets/mim", params=API, headers={"Content-Length": "0"})
    error = kv_error(r, 401, "Unauthorized")
    assert error["message"].startswith("AKV10000")
    header = r.headers["www-authenticate"]
    assert header == (
        f'Bearer authorization="https://emulator.test/{emulator.tenant_id}", '
        'resource="https://vault.azure.net"'
    )
    # What the SDK's ChallengeAuthPolicy makes of it.
    challenge = HttpChallenge(str(r.request.url), header)
    assert challenge.is_bearer_challenge()
    assert challenge.tenant_id == emulator.tenant_id
    assert challenge.get_resource() == "https://vault.azure.net"
    assert challenge.get_scope() == ""
    assert emulator.directory.state.vaults["contoso-vault"].secrets == {}


@pytest.mark.parametrize(
    "authorization", ["Bearer", "Bearer   ", "Basic dXNlcjpwdw==", "Bearer not-a-jwt"]
)
def test_bad_authorization_gets_the_challenge(client: httpx.Client, authorization: str) -> None:
    r = client.get(f"{VAULT}/secrets", params=API, headers={"Authorization": authorization})
    kv_error(r, 401, "Unauthorized")
    assert r.headers["www-authenticate"].startswith('Bearer authorization="')


def test_token_for_another_audience_is_refused(client: httpx.Client, emulator: Emulator) -> None:
    graph = admin_headers(client, emulator)
    r = put(client, graph, "mim", {"value": "x"})
    error = kv_error(r, 401, "Unauthorized")
    assert error["message"].startswith("AKV10022: Invalid audience.")
    assert "found: https://graph.microsoft.com" in error["message"]
    assert "www-authenticate" in r.headers


def test_expired_token_is_refused(
    client: httpx.Client, emulator: Emulator, clock: FakeClock, h: JSON
) -> None:
    clock.advance(emulator.knobs.token_lifetime + 1)
    kv_error(client.get(f"{VAULT}/secrets", params=API, headers=h), 401, "Unauthorized")


# --- secrets --------------------------------------------------------------------------------------


def test_set_get_versions_list(client: httpx.Client, emulator: Emulator, h: JSON) -> None:
    now = int(emulator.clock.now().timestamp())
    exp = now + 86400 * 180
    r = put(
        client,
        h,
        "mim-secret",
        {
            "value": "first-value",
            "contentType": "text/plain; charset=utf-8",
            "attributes": {"enabled": True, "exp": exp},
            "tags": {"application-id": "abc", "managed-by": "mim-o365"},
        },
    )
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["value"] == "first-value"
    m = re.match(
        r"^https://contoso-vault\.vault\.azure\.net/secrets/mim-secret/(\w+)$", first["id"]
    )
    assert m is not None and VERSION.match(m.group(1)), first["id"]
    v1 = m.group(1)
    assert first["contentType"] == "text/plain; charset=utf-8"
    assert first["tags"] == {"application-id": "abc", "managed-by": "mim-o365"}
    attrs = first["attributes"]
    assert attrs["enabled"] is True
    assert attrs["exp"] == exp
    assert "nbf" not in attrs
    assert attrs["created"] == attrs["updated"] == now
    assert attrs["recoveryLevel"] == "Recoverable+Purgeable"

    r = put(client, h, "mim-secret", {"value": "second-value"})
    assert r.status_code == 200, r.text
    v2 = r.json()["id"].rsplit("/", 1)[1]
    assert v2 != v1
    assert "contentType" not in r.json()
    assert "tags" not in r.json()

    latest = client.get(f"{VAULT}/secrets/mim-secret", params=API, headers=h)
    assert latest.status_code == 200, latest.text
    assert latest.json()["value"] == "second-value"
    # the SDK asks for the current version with an empty version segment
    assert (
        client.get(f"{VAULT}/secrets/mim-secret/", params=API, headers=h).json()["id"].endswith(v2)
    )
    old = client.get(f"{VAULT}/secrets/mim-secret/{v1}", params=API, headers=h)
    assert old.status_code == 200, old.text
    assert old.json()["value"] == "first-value"
    assert old.json()["attributes"]["exp"] == exp

    # versions, one per page, following nextLink
    seen: list[str] = []
    url: str | None = f"{VAULT}/secrets/mim-secret/versions"
    params: dict[str, str] | None = {**API, "maxresults": "1"}
    while url:
        page = client.get(url, params=params, headers=h)
        assert page.status_code == 200, page.text
        body = page.json()
        for item in body["value"]:
            assert "value" not in item
            seen.append(item["id"].rsplit("/", 1)[1])
        url, params = body["nextLink"], None
        if url:
            assert url.startswith(
                "https://emulator.test/keyvault/contoso-vault/secrets/mim-secret/versions?"
            )
            assert "api-version=7.5" in url
    assert seen == [v1, v2]

    put(client, h, "another", {"value": "x"})
    listing = client.get(f"{VAULT}/secrets", params=API, headers=h).json()
    assert listing["nextLink"] is None
    ids = [item["id"] for item in listing["value"]]
    assert ids == [
        "https://contoso-vault.vault.azure.net/secrets/another",
        "https://contoso-vault.vault.azure.net/secrets/mim-secret",
    ]
    assert all("value" not in item for item in listing["value"])


def test_secret_names_are_case_insensitive(client: httpx.Client, h: JSON) -> None:
    put(client, h, "MIM-Secret", {"value": "one"})
    put(client, h, "mim-secret", {"value": "two"})
    r = client.get(f"{VAULT}/secrets/MIM-SECRET", params=API, headers=h)
    assert r.json()["value"] == "two"
    assert "/secrets/MIM-Secret/" in r.json()["id"]
    versions = client.get(f"{VAULT}/secrets/mim-secret/versions", params=API, headers=h).json()
    assert len(versions["value"]) == 2


def test_delete_is_soft_then_recover_and_purge(
    client: httpx.Client, emulator: Emulator, h: JSON
) -> None:
    put(client, h, "gone", {"value": "x"})
    r = client.delete(f"{VAULT}/secrets/gone", params=API, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert "value" not in body
    assert body["recoveryId"] == "https://contoso-vault.vault.azure.net/deletedsecrets/gone"
    now = int(emulator.clock.now().timestamp())
    assert body["deletedDate"] == now
    assert body["scheduledPurgeDate"] == now + 90 * 86400
    kv_error(client.get(f"{VAULT}/secrets/gone", params=API, headers=h), 404, "SecretNotFound")
    error = kv_error(put(client, h, "gone", {"value": "y"}), 409, "Conflict")
    assert error["innererror"]["code"] == "ObjectIsDeletedButRecoverable"
    assert client.get(f"{VAULT}/deletedsecrets/gone", params=API, headers=h).status_code == 200
    deleted = client.get(f"{VAULT}/deletedsecrets", params=API, headers=h).json()["value"]
    assert [d["recoveryId"].rsplit("/", 1)[1] for d in deleted] == ["gone"]

    r = client.post(f"{VAULT}/deletedsecrets/gone/recover", params=API, headers=h)
    assert r.status_code == 200, r.text
    assert client.get(f"{VAULT}/secrets/gone", params=API, headers=h).json()["value"] == "x"

    client.delete(f"{VAULT}/secrets/gone", params=API, headers=h)
    r = client.delete(f"{VAULT}/deletedsecrets/gone", params=API, headers=h)
    assert r.status_code == 204, r.text
    kv_error(
        client.get(f"{VAULT}/deletedsecrets/gone", params=API, headers=h), 404, "SecretNotFound"
    )
    assert put(client, h, "gone", {"value": "fresh"}).status_code == 200


def test_disabled_version_cannot_be_read(client: httpx.Client, h: JSON) -> None:
    version = put(client, h, "off", {"value": "x"}).json()["id"].rsplit("/", 1)[1]
    r = client.patch(
        f"{VAULT}/secrets/off/{version}",
        json={"attributes": {"enabled": False}, "tags": {"a": "b"}},
        params=API,
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["attributes"]["enabled"] is False
    assert r.json()["tags"] == {"a": "b"}
    assert "value" not in r.json()
    error = kv_error(client.get(f"{VAULT}/secrets/off", params=API, headers=h), 403, "Forbidden")
    assert error["innererror"]["code"] == "SecretDisabled"


# --- access ---------------------------------------------------------------------------------------


def test_caller_not_on_the_access_list_is_forbidden(
    client: httpx.Client, emulator: Emulator, h: JSON
) -> None:
    app_id, secret, sp_id = new_app(client, emulator)
    outsider = kv_headers(client, emulator, app_id, secret)
    r = put(client, outsider, "mim", {"value": "must-not-be-stored"})
    error = kv_error(r, 403, "Forbidden")
    assert error["innererror"] == {"code": "AccessDenied"}
    assert "does not have secrets set permission on key vault 'contoso-vault" in error["message"]
    assert f"appid={app_id};oid={sp_id}" in error["message"]
    assert "must-not-be-stored" not in r.text
    assert emulator.directory.state.vaults["contoso-vault"].secrets == {}
    # permission comes before existence
    kv_error(client.get(f"{VAULT}/secrets/nothing", params=API, headers=outsider), 403, "Forbidden")

    emulator.keyvault.vaults.grant("contoso-vault", sp_id, ["get"])
    kv_error(
        client.get(f"{VAULT}/secrets/nothing", params=API, headers=outsider), 404, "SecretNotFound"
    )
    error = kv_error(put(client, outsider, "mim", {"value": "x"}), 403, "Forbidden")
    assert "secrets set permission" in error["message"]
    put(client, h, "shared", {"value": "readable"})
    r = client.get(f"{VAULT}/secrets/shared", params=API, headers=outsider)
    assert r.json()["value"] == "readable"
    error = kv_error(client.get(f"{VAULT}/secrets", params=API, headers=outsider), 403, "Forbidden")
    assert "secrets list permission" in error["message"]

    emulator.keyvault.vaults.revoke("contoso-vault", sp_id)
    kv_error(client.get(f"{VAULT}/secrets/shared", params=API, headers=outsider), 403, "Forbidden")


def test_vaults_added_through_the_backend(
    client: httpx.Client, emulator: Emulator, h: JSON
) -> None:
    admin_sp = emulator.directory.sp_by_app_id(emulator.admin_client_id)
    assert admin_sp is not None
    emulator.keyvault.vaults.create_vault("fabrikam-kv", [admin_sp.id])
    emulator.keyvault.vaults.create_vault("empty-kv")
    r = client.put("/keyvault/fabrikam-kv/secrets/s", json={"value": "v"}, params=API, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["id"].startswith("https://fabrikam-kv.vault.azure.net/secrets/s/")
    kv_error(
        client.put("/keyvault/empty-kv/secrets/s", json={"value": "v"}, params=API, headers=h),
        403,
        "Forbidden",
    )
    with pytest.raises(ValueError, match="3-24"):
        emulator.keyvault.vaults.create_vault("x")
    with pytest.raises(ValueError, match="already exists"):
        emulator.keyvault.vaults.create_vault("Fabrikam-KV")


# --- not found, bad requests ----------------------------------------------------------------------


def test_not_found(client: httpx.Client, h: JSON) -> None:
    r = client.get("/keyvault/no-such-vault/secrets/x", params=API, headers=h)
    kv_error(r, 404, "VaultNotFound")
    assert "www-authenticate" not in r.headers
    error = kv_error(
        client.get(f"{VAULT}/secrets/missing", params=API, headers=h), 404, "SecretNotFound"
    )
    assert "missing" in error["message"]
    put(client, h, "present", {"value": "x"})
    kv_error(
        client.get(f"{VAULT}/secrets/present/{'0' * 32}", params=API, headers=h),
        404,
        "SecretNotFound",
    )
    kv_error(
        client.get(f"{VAULT}/secrets/missing/versions", params=API, headers=h),
        404,
        "SecretNotFound",
    )
    kv_error(
        client.delete(f"{VAULT}/secrets/missing", params=API, headers=h), 404, "SecretNotFound"
    )


def test_api_version_is_required(client: httpx.Client, h: JSON) -> None:
    kv_error(client.get(f"{VAULT}/secrets", headers=h), 400, "BadParameter")
    error = kv_error(
        client.get(f"{VAULT}/secrets", params={"api-version": "2099-01-01"}, headers=h),
        400,
        "BadParameter",
    )
    assert "2099-01-01" in error["message"]


@pytest.mark.parametrize("version", sorted(API_VERSIONS))
def test_every_sdk_api_version_is_served(client: httpx.Client, h: JSON, version: str) -> None:
    r = client.get(f"{VAULT}/secrets", params={"api-version": version}, headers=h)
    assert r.status_code == 200, r.text


def test_malformed_requests_never_fail_the_emulator(client: httpx.Client, h: JSON) -> None:
    put(client, h, "ok", {"value": "x"})
    cases: list[tuple[str, str, Any, dict[str, str]]] = [
        ("PUT", "/secrets/ok", b"not json", API),
        ("PUT", "/secrets/ok", b"", API),
        ("PUT", "/secrets/ok", b"[1, 2]", API),
        ("PUT", "/secrets/ok", {"value": 5}, API),
        ("PUT", "/secrets/ok", {}, API),
        ("PUT", "/secrets/ok", {"value": "x", "contentType": 3}, API),
        ("PUT", "/secrets/ok", {"value": "x", "attributes": []}, API),
        ("PUT", "/secrets/ok", {"value": "x", "attributes": {"exp": "tomorrow"}}, API),
        ("PUT", "/secrets/ok", {"value": "x", "attributes": {"exp": 10**20}}, API),
        ("PUT", "/secrets/ok", {"value": "x", "attributes": {"enabled": "yes"}}, API),
        ("PUT", "/secrets/ok", {"value": "x", "tags": ["a"]}, API),
        ("PUT", "/secrets/ok", {"value": "x", "tags": {"a": 1}}, API),
        ("PUT", "/secrets/ok", {"value": "x", "tags": {str(i): "v" for i in range(16)}}, API),
        ("PUT", "/secrets/ok", {"value": "x" * 30000}, API),
        ("PUT", "/secrets/bad_name", {"value": "x"}, API),
        ("PUT", f"/secrets/{'a' * 128}", {"value": "x"}, API),
        ("PATCH", "/secrets/ok/", b"{", API),
        ("PATCH", "/secrets/ok/abc", {"attributes": {"enabled": 1}}, API),
        ("POST", "/secrets/ok", {"value": "x"}, API),
        ("GET", "/secrets", None, {**API, "maxresults": "0"}),
        ("GET", "/secrets", None, {**API, "maxresults": "abc"}),
        ("GET", "/secrets", None, {**API, "maxresults": "26"}),
        ("GET", "/secrets", None, {**API, "$skiptoken": "%%%"}),
        ("GET", "/secrets", None, {**API, "$skiptoken": "LTE"}),
        ("GET", "/keys", None, API),
        ("GET", "", None, API),
        ("DELETE", "/deletedsecrets/never", None, API),
        ("POST", "/deletedsecrets/never/recover", None, API),
    ]
    for method, path, body, params in cases:
        kwargs: dict[str, Any] = {"params": params, "headers": h}
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        r = client.request(method, f"{VAULT}{path}", **kwargs)
        assert 400 <= r.status_code < 500, (method, path, body, r.status_code, r.text)
        assert isinstance(r.json()["error"]["code"], str), (method, path)
    assert client.get(f"{VAULT}/secrets/ok", params=API, headers=h).json()["value"] == "x"


# --- persistence ----------------------------------------------------------------------------------


def test_vaults_survive_a_save_and_load(
    client: httpx.Client, emulator: Emulator, clock: FakeClock, h: JSON
) -> None:
    exp = int((clock.now() + timedelta(days=30)).timestamp())
    put(client, h, "kept", {"value": "v1", "attributes": {"exp": exp}, "tags": {"t": "1"}})
    put(client, h, "kept", {"value": "v2"})
    restored = Emulator(seed=9, clock=clock, state=loads(dumps(emulator.directory.state)))
    vault = restored.directory.state.vaults["contoso-vault"]
    versions = vault.secrets["kept"].versions
    assert [v.value for v in versions] == ["v1", "v2"]
    assert versions[0].expires is not None and int(versions[0].expires.timestamp()) == exp
    assert versions[0].tags == {"t": "1"}
    assert vault.access == emulator.directory.state.vaults["contoso-vault"].access


def test_state_saved_before_vaults_existed_gets_the_seeded_vault(
    emulator: Emulator, clock: FakeClock
) -> None:
    import json

    data = json.loads(dumps(emulator.directory.state))
    del data["directory"]["vaults"]
    data["directory"]["service_principals"] = {
        k: sp
        for k, sp in data["directory"]["service_principals"].items()
        if sp["app_id"] != KEYVAULT_APP_ID
    }
    restored = Emulator(seed=9, clock=clock, state=loads(json.dumps(data)))
    assert "contoso-vault" in restored.directory.state.vaults
    assert restored.directory.state.vaults["contoso-vault"].access
    client = http(restored)
    h = kv_headers(client, restored, restored.admin_client_id, restored.admin_client_secret)
    assert put(client, h, "after-upgrade", {"value": "x"}).status_code == 200
