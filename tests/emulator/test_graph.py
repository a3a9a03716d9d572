"""Graph v1.0 semantics of the emulator, checked against the wire reference (protocol.md §1).

Everything runs in-process through ``http(emulator)``; every response is also validated against
Microsoft's OpenAPI description by the autouse conformance fixture.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from mim_o365 import FakeClock
from mim_o365._wellknown import (
    EXCHANGE_APP_ID,
    EXCHANGE_MANAGE_AS_APP_ID,
    FULL_ACCESS_AS_APP_ID,
    GRAPH_APP_ID,
    GRAPH_USER_READ_SCOPE_ID,
)
from mim_o365.emulator import Emulator
from tests.helpers import EXCHANGE, GRAPH, admin_headers, claims, create_app, http, token_response

JSON = dict[str, Any]
Headers = dict[str, str]

APPLICATION_READ_WRITE_ALL_ID = "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9"
APPLICATION_READ_ALL_ID = "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ODATA_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")

EXO_ROLE: JSON = {
    "resourceAppId": EXCHANGE_APP_ID,
    "resourceAccess": [{"id": FULL_ACCESS_AS_APP_ID, "type": "Role"}],
}
GRAPH_USER_READ: JSON = {
    "resourceAppId": GRAPH_APP_ID,
    "resourceAccess": [{"id": GRAPH_USER_READ_SCOPE_ID, "type": "Scope"}],
}


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def client(emulator: Emulator) -> httpx.Client:
    return http(emulator)


@pytest.fixture
def h(client: httpx.Client, emulator: Emulator) -> Headers:
    return admin_headers(client, emulator)


def graph_error(r: httpx.Response, status: int, code: str | None = None) -> JSON:
    """Assert ``r`` is a Graph OData error with ``status`` (and ``code``); return ``error``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error: JSON = r.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    inner = error["innerError"]
    assert ODATA_DATE.match(inner["date"])
    assert GUID.match(inner["request-id"])
    assert "client-request-id" in inner
    if code is not None:
        assert error["code"] == code, error
    return error


def values(r: httpx.Response) -> list[JSON]:
    assert r.status_code == 200, r.text
    items: list[JSON] = r.json()["value"]
    return items


def is_guid(value: object) -> bool:
    return isinstance(value, str) and GUID.match(value) is not None


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def create_sp(client: httpx.Client, h: Headers, app_id: str) -> JSON:
    r = client.post("/v1.0/servicePrincipals", json={"appId": app_id}, headers=h)
    assert r.status_code == 201, r.text
    body: JSON = r.json()
    return body


def sp_by_app_id(client: httpx.Client, h: Headers, app_id: str) -> JSON:
    r = client.get(f"/v1.0/servicePrincipals(appId='{app_id}')", headers=h)
    assert r.status_code == 200, r.text
    body: JSON = r.json()
    return body


def add_password(
    client: httpx.Client, h: Headers, app_object_id: str, body: JSON | None = None
) -> JSON:
    r = client.post(f"/v1.0/applications/{app_object_id}/addPassword", json=body or {}, headers=h)
    assert r.status_code == 200, r.text
    cred: JSON = r.json()
    return cred


def assign(
    client: httpx.Client, h: Headers, principal_id: str, resource_id: str, role_id: str
) -> httpx.Response:
    return client.post(
        f"/v1.0/servicePrincipals/{resource_id}/appRoleAssignedTo",
        json={"principalId": principal_id, "resourceId": resource_id, "appRoleId": role_id},
        headers=h,
    )


def app_with_sp(client: httpx.Client, h: Headers, name: str = "client app") -> tuple[JSON, JSON]:
    app = create_app(client, h, name)
    return app, create_sp(client, h, app["appId"])


# --- POST /applications -------------------------------------------------------------------------


def test_create_application_returns_201_entity(client: httpx.Client, h: Headers) -> None:
    r = client.post(
        "/v1.0/applications",
        json={
            "displayName": "MIM Service mailbox client access",
            "signInAudience": "AzureADMyOrg",
            "requiredResourceAccess": [EXO_ROLE],
            "tags": ["mim-o365", "HideApp"],
            "notes": "created by a test",
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["@odata.context"].endswith("/v1.0/$metadata#applications/$entity")
    assert is_guid(body["id"])
    assert is_guid(body["appId"])
    assert body["id"] != body["appId"]
    assert body["displayName"] == "MIM Service mailbox client access"
    assert body["signInAudience"] == "AzureADMyOrg"
    assert body["requiredResourceAccess"] == [EXO_ROLE]
    assert body["tags"] == ["mim-o365", "HideApp"]
    assert body["notes"] == "created by a test"
    assert body["passwordCredentials"] == []
    assert body["keyCredentials"] == []
    assert body["identifierUris"] == []
    assert body["publisherDomain"] == "contoso.onmicrosoft.com"
    assert body["deletedDateTime"] is None


def test_create_application_ids_are_fresh(client: httpx.Client, h: Headers) -> None:
    a, b = create_app(client, h, "same"), create_app(client, h, "same")
    assert len({a["id"], a["appId"], b["id"], b["appId"]}) == 4


def test_create_application_without_display_name_is_400(client: httpx.Client, h: Headers) -> None:
    r = client.post("/v1.0/applications", json={"signInAudience": "AzureADMyOrg"}, headers=h)
    graph_error(r, 400, "Request_BadRequest")


def test_create_application_with_non_json_body_is_400(client: httpx.Client, h: Headers) -> None:
    r = client.post(
        "/v1.0/applications",
        content=b"{displayName: not json",
        headers={**h, "Content-Type": "application/json"},
    )
    graph_error(r, 400)


def test_create_application_with_json_array_body_is_400(client: httpx.Client, h: Headers) -> None:
    r = client.post("/v1.0/applications", json=[{"displayName": "x"}], headers=h)
    graph_error(r, 400)


def test_create_application_with_unknown_property_is_400(client: httpx.Client, h: Headers) -> None:
    r = client.post("/v1.0/applications", json={"displayName": "x", "colour": "blue"}, headers=h)
    graph_error(r, 400, "Request_BadRequest")


def test_create_application_with_password_credentials_is_400(
    client: httpx.Client, h: Headers
) -> None:
    r = client.post(
        "/v1.0/applications",
        json={"displayName": "x", "passwordCredentials": [{"displayName": "s"}]},
        headers=h,
    )
    graph_error(r, 400, "Request_BadRequest")


def test_rejected_create_leaves_no_application(client: httpx.Client, h: Headers) -> None:
    before = len(client.get("/v1.0/applications", headers=h).json()["value"])
    client.post("/v1.0/applications", json={"displayName": "bad", "colour": "blue"}, headers=h)
    assert len(client.get("/v1.0/applications", headers=h).json()["value"]) == before


@pytest.mark.parametrize(
    "web",
    [
        {"redirectUris": 5},
        {"redirectUris": "https://localhost/consent-done"},
        {"redirectUris": [5]},
        {"homePageUrl": 5},
        {"colour": "blue"},
        "https://localhost/consent-done",
    ],
)
def test_create_application_with_bad_web_is_400(
    client: httpx.Client, h: Headers, web: object
) -> None:
    r = client.post("/v1.0/applications", json={"displayName": "bad web", "web": web}, headers=h)
    graph_error(r, 400, "Request_BadRequest")
    # the rejected app is not stored, so listing still works
    names = [x["displayName"] for x in values(client.get("/v1.0/applications", headers=h))]
    assert "bad web" not in names


def test_create_application_with_web_redirect_uris(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h, web={"redirectUris": ["https://localhost/consent-done"]})
    assert app["web"]["redirectUris"] == ["https://localhost/consent-done"]
    assert app["publicClient"] == {"redirectUris": []}


# --- GET /applications/{id} ---------------------------------------------------------------------


def test_get_application_by_id_and_by_app_id_is_the_same(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h, "lookup", requiredResourceAccess=[EXO_ROLE])
    by_id = client.get(f"/v1.0/applications/{app['id']}", headers=h)
    by_app_id = client.get(f"/v1.0/applications(appId='{app['appId']}')", headers=h)
    assert by_id.status_code == by_app_id.status_code == 200
    one, other = by_id.json(), by_app_id.json()
    assert one["@odata.context"].endswith("#applications/$entity")
    assert one == other
    assert one["id"] == app["id"]
    assert one["requiredResourceAccess"] == [EXO_ROLE]


def test_get_unknown_application_is_404_envelope(client: httpx.Client, h: Headers) -> None:
    missing = str(uuid.uuid4())
    r = client.get(f"/v1.0/applications/{missing}", headers=h)
    error = graph_error(r, 404, "Request_ResourceNotFound")
    assert missing in error["message"]
    assert error["innerError"]["request-id"] == r.headers["request-id"]
    r = client.get(f"/v1.0/applications(appId='{missing}')", headers=h)
    graph_error(r, 404, "Request_ResourceNotFound")


def test_client_request_id_is_echoed(client: httpx.Client, h: Headers) -> None:
    crid = str(uuid.uuid4())
    r = client.get(f"/v1.0/applications/{uuid.uuid4()}", headers={**h, "client-request-id": crid})
    error = graph_error(r, 404, "Request_ResourceNotFound")
    assert error["innerError"]["client-request-id"] == crid
    assert r.headers["client-request-id"] == crid
    assert r.headers["request-id"] != crid
    ok = client.get("/v1.0/organization", headers={**h, "client-request-id": crid})
    assert ok.status_code == 200
    assert ok.headers["client-request-id"] == crid


# --- PATCH /applications/{id} -------------------------------------------------------------------


def test_patch_replaces_required_resource_access_whole(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h, "patch me", requiredResourceAccess=[GRAPH_USER_READ, EXO_ROLE])
    assert app["requiredResourceAccess"] == [GRAPH_USER_READ, EXO_ROLE]
    r = client.patch(
        f"/v1.0/applications/{app['id']}", json={"requiredResourceAccess": [EXO_ROLE]}, headers=h
    )
    assert r.status_code == 204, r.text
    assert r.content == b""
    after = client.get(f"/v1.0/applications/{app['id']}", headers=h).json()
    assert after["requiredResourceAccess"] == [EXO_ROLE]
    assert after["displayName"] == "patch me"  # properties not sent keep their value


def test_patch_keeps_unsent_properties(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h, "keep", requiredResourceAccess=[EXO_ROLE], tags=["t1"])
    r = client.patch(f"/v1.0/applications/{app['id']}", json={"notes": "n"}, headers=h)
    assert r.status_code == 204
    after = client.get(f"/v1.0/applications/{app['id']}", headers=h).json()
    assert after["notes"] == "n"
    assert after["tags"] == ["t1"]
    assert after["requiredResourceAccess"] == [EXO_ROLE]


def test_patch_with_invalid_access_type_is_400(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h, "bad type", requiredResourceAccess=[EXO_ROLE])
    bad = {
        "resourceAppId": GRAPH_APP_ID,
        "resourceAccess": [{"id": GRAPH_USER_READ_SCOPE_ID, "type": "Delegated"}],
    }
    r = client.patch(
        f"/v1.0/applications/{app['id']}", json={"requiredResourceAccess": [bad]}, headers=h
    )
    graph_error(r, 400, "Request_BadRequest")
    after = client.get(f"/v1.0/applications/{app['id']}", headers=h).json()
    assert after["requiredResourceAccess"] == [EXO_ROLE]


@pytest.mark.parametrize("prop", ["appId", "id", "publisherDomain", "createdDateTime"])
def test_patch_read_only_property_is_400(client: httpx.Client, h: Headers, prop: str) -> None:
    app = create_app(client, h, "ro")
    value = str(uuid.uuid4()) if prop in ("appId", "id") else "x"
    r = client.patch(f"/v1.0/applications/{app['id']}", json={prop: value}, headers=h)
    graph_error(r, 400, "Request_BadRequest")
    after = client.get(f"/v1.0/applications/{app['id']}", headers=h).json()
    assert after[prop] == app[prop]


def test_rejected_patch_changes_nothing(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h, "atomic", tags=["old"], requiredResourceAccess=[EXO_ROLE])
    body = {"tags": ["new"], "requiredResourceAccess": [], "notes": "n", "appId": str(uuid.uuid4())}
    graph_error(
        client.patch(f"/v1.0/applications/{app['id']}", json=body, headers=h),
        400,
        "Request_BadRequest",
    )
    bad_web = {"displayName": "renamed", "web": {"redirectUris": 5}}
    graph_error(
        client.patch(f"/v1.0/applications/{app['id']}", json=bad_web, headers=h),
        400,
        "Request_BadRequest",
    )
    after = client.get(f"/v1.0/applications/{app['id']}", headers=h).json()
    assert after["tags"] == ["old"]
    assert after["requiredResourceAccess"] == [EXO_ROLE]
    assert after["notes"] is None
    assert after["displayName"] == "atomic"


def test_patch_unknown_application_is_404(client: httpx.Client, h: Headers) -> None:
    r = client.patch(f"/v1.0/applications/{uuid.uuid4()}", json={"notes": "x"}, headers=h)
    graph_error(r, 404, "Request_ResourceNotFound")


# --- addPassword / removePassword ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1.0/applications/{id}/addPassword",
        "/v1.0/applications/{id}/microsoft.graph.addPassword",
        "/v1.0/applications(appId='{appId}')/addPassword",
    ],
)
def test_add_password_path_forms(
    client: httpx.Client, h: Headers, clock: FakeClock, path: str
) -> None:
    app = create_app(client, h, "secret holder")
    r = client.post(path.format(id=app["id"], appId=app["appId"]), json={}, headers=h)
    assert r.status_code == 200, r.text
    cred = r.json()
    text = cred["secretText"]
    assert isinstance(text, str) and 16 <= len(text) <= 64
    assert cred["hint"] == text[:3]
    assert is_guid(cred["keyId"])
    start, end = parse_time(cred["startDateTime"]), parse_time(cred["endDateTime"])
    assert start == clock.now().replace(microsecond=0)
    assert end - start == timedelta(days=730)
    stored = client.get(f"/v1.0/applications/{app['id']}", headers=h).json()["passwordCredentials"]
    assert [c["keyId"] for c in stored] == [cred["keyId"]]
    assert stored[0]["secretText"] is None
    assert stored[0]["hint"] == text[:3]


def test_add_password_with_empty_body(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h)
    r = client.post(f"/v1.0/applications/{app['id']}/addPassword", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["secretText"]


def test_secrets_never_repeat(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h)
    creds = [add_password(client, h, app["id"]) for _ in range(50)]
    assert len({c["secretText"] for c in creds}) == 50
    assert len({c["keyId"] for c in creds}) == 50


def test_add_password_custom_end_and_display_name(
    client: httpx.Client, h: Headers, clock: FakeClock
) -> None:
    app = create_app(client, h)
    end = (clock.now() + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cred = add_password(
        client,
        h,
        app["id"],
        {"passwordCredential": {"displayName": "rotation", "endDateTime": end}},
    )
    assert cred["displayName"] == "rotation"
    assert parse_time(cred["endDateTime"]) == parse_time(end)
    stored = client.get(f"/v1.0/applications/{app['id']}", headers=h).json()["passwordCredentials"][
        0
    ]
    assert parse_time(stored["endDateTime"]) == parse_time(end)
    assert stored["displayName"] == "rotation"


@pytest.mark.parametrize("days", [0, -1])
def test_add_password_end_not_after_start_is_400(
    client: httpx.Client, h: Headers, clock: FakeClock, days: int
) -> None:
    app = create_app(client, h)
    start = clock.now()
    body = {
        "passwordCredential": {
            "startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endDateTime": (start + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }
    r = client.post(f"/v1.0/applications/{app['id']}/addPassword", json=body, headers=h)
    graph_error(r, 400)
    assert (
        client.get(f"/v1.0/applications/{app['id']}", headers=h).json()["passwordCredentials"] == []
    )


def test_add_password_unknown_application_is_404(client: httpx.Client, h: Headers) -> None:
    r = client.post(f"/v1.0/applications/{uuid.uuid4()}/addPassword", json={}, headers=h)
    graph_error(r, 404, "Request_ResourceNotFound")


def test_remove_password(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h)
    keep, drop = add_password(client, h, app["id"]), add_password(client, h, app["id"])
    r = client.post(
        f"/v1.0/applications/{app['id']}/removePassword", json={"keyId": drop["keyId"]}, headers=h
    )
    assert r.status_code == 204, r.text
    assert r.content == b""
    stored = client.get(f"/v1.0/applications/{app['id']}", headers=h).json()["passwordCredentials"]
    assert [c["keyId"] for c in stored] == [keep["keyId"]]


def test_remove_password_microsoft_graph_form(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h)
    cred = add_password(client, h, app["id"])
    r = client.post(
        f"/v1.0/applications(appId='{app['appId']}')/microsoft.graph.removePassword",
        json={"keyId": cred["keyId"]},
        headers=h,
    )
    assert r.status_code == 204, r.text
    assert (
        client.get(f"/v1.0/applications/{app['id']}", headers=h).json()["passwordCredentials"] == []
    )


def test_remove_unknown_password_is_odata_error(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h)
    cred = add_password(client, h, app["id"])
    r = client.post(
        f"/v1.0/applications/{app['id']}/removePassword",
        json={"keyId": str(uuid.uuid4())},
        headers=h,
    )
    assert 400 <= r.status_code < 500
    graph_error(r, r.status_code)
    stored = client.get(f"/v1.0/applications/{app['id']}", headers=h).json()["passwordCredentials"]
    assert [c["keyId"] for c in stored] == [cred["keyId"]]


def test_removed_secret_no_longer_gets_tokens(
    client: httpx.Client, h: Headers, emulator: Emulator
) -> None:
    app, _ = app_with_sp(client, h)
    cred = add_password(client, h, app["id"])
    assert token_response(client, emulator, app["appId"], cred["secretText"]).status_code == 200
    client.post(
        f"/v1.0/applications/{app['id']}/removePassword", json={"keyId": cred["keyId"]}, headers=h
    )
    assert token_response(client, emulator, app["appId"], cred["secretText"]).status_code == 401


# --- DELETE /applications/{id} ------------------------------------------------------------------


def test_delete_application_removes_sp_and_its_assignments(
    client: httpx.Client, h: Headers
) -> None:
    app, sp = app_with_sp(client, h)
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    assert assign(client, h, sp["id"], exo["id"], FULL_ACCESS_AS_APP_ID).status_code == 201
    r = client.delete(f"/v1.0/applications/{app['id']}", headers=h)
    assert r.status_code == 204, r.text
    assert r.content == b""
    graph_error(
        client.get(f"/v1.0/applications/{app['id']}", headers=h), 404, "Request_ResourceNotFound"
    )
    graph_error(
        client.get(f"/v1.0/servicePrincipals/{sp['id']}", headers=h),
        404,
        "Request_ResourceNotFound",
    )
    graph_error(
        client.get(f"/v1.0/servicePrincipals(appId='{app['appId']}')", headers=h),
        404,
        "Request_ResourceNotFound",
    )
    granted = client.get(
        f"/v1.0/servicePrincipals/{exo['id']}/appRoleAssignedTo", headers=h
    ).json()["value"]
    assert all(a["principalId"] != sp["id"] for a in granted)
    listed = client.get(f"/v1.0/applications?$filter=appId eq '{app['appId']}'", headers=h).json()[
        "value"
    ]
    assert listed == []


def test_delete_unknown_application_is_404(client: httpx.Client, h: Headers) -> None:
    graph_error(
        client.delete(f"/v1.0/applications/{uuid.uuid4()}", headers=h),
        404,
        "Request_ResourceNotFound",
    )


# --- service principals -------------------------------------------------------------------------


def test_create_service_principal(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h, "with sp")
    r = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=h)
    assert r.status_code == 201, r.text
    sp = r.json()
    assert sp["@odata.context"].endswith("#servicePrincipals/$entity")
    assert is_guid(sp["id"]) and sp["id"] not in (app["id"], app["appId"])
    assert sp["appId"] == app["appId"]
    assert app["appId"] in sp["servicePrincipalNames"]
    assert sp["displayName"] == "with sp"
    assert sp["accountEnabled"] is True
    assert sp["appRoles"] == []
    assert sp_by_app_id(client, h, app["appId"])["id"] == sp["id"]
    assert (
        client.get(f"/v1.0/servicePrincipals/{sp['id']}", headers=h).json()["appId"] == app["appId"]
    )


def test_create_service_principal_twice_is_409(client: httpx.Client, h: Headers) -> None:
    app, _ = app_with_sp(client, h)
    r = client.post("/v1.0/servicePrincipals", json={"appId": app["appId"]}, headers=h)
    error = graph_error(r, 409, "Request_MultipleObjectsWithSameKeyValue")
    assert error["details"][0]["code"] == "ObjectConflict"


def test_create_service_principal_for_unknown_app_is_400(client: httpx.Client, h: Headers) -> None:
    missing = str(uuid.uuid4())
    r = client.post("/v1.0/servicePrincipals", json={"appId": missing}, headers=h)
    error = graph_error(r, 400, "Request_BadRequest")
    assert error["details"][0]["code"] == "NoBackingApplicationObject"
    assert error["details"][0]["target"] == "appId"


def test_exchange_sp_select_id_and_app_roles(client: httpx.Client, h: Headers) -> None:
    r = client.get(
        f"/v1.0/servicePrincipals(appId='{EXCHANGE_APP_ID}')?$select=id,appRoles", headers=h
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k for k in body if not k.startswith("@odata.")} == {"id", "appRoles"}
    assert "(id,appRoles)" in body["@odata.context"]
    roles = {role["value"]: role for role in body["appRoles"]}
    assert roles["full_access_as_app"]["id"] == FULL_ACCESS_AS_APP_ID
    assert roles["Exchange.ManageAsApp"]["id"] == EXCHANGE_MANAGE_AS_APP_ID
    assert roles["full_access_as_app"]["allowedMemberTypes"] == ["Application"]
    assert roles["full_access_as_app"]["isEnabled"] is True


def test_graph_sp_scopes_and_roles(client: httpx.Client, h: Headers) -> None:
    sp = sp_by_app_id(client, h, GRAPH_APP_ID)
    scopes = {s["value"]: s["id"] for s in sp["oauth2PermissionScopes"]}
    roles = {r["value"]: r["id"] for r in sp["appRoles"]}
    assert scopes["User.Read"] == GRAPH_USER_READ_SCOPE_ID
    assert roles["Application.ReadWrite.All"] == APPLICATION_READ_WRITE_ALL_ID
    assert roles["Application.Read.All"] == APPLICATION_READ_ALL_ID


def test_service_principals_filter_by_app_id(client: httpx.Client, h: Headers) -> None:
    r = client.get(f"/v1.0/servicePrincipals?$filter=appId eq '{EXCHANGE_APP_ID}'", headers=h)
    assert r.status_code == 200, r.text
    assert [sp["appId"] for sp in r.json()["value"]] == [EXCHANGE_APP_ID]


def test_delete_service_principal_keeps_application(client: httpx.Client, h: Headers) -> None:
    app, sp = app_with_sp(client, h)
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    assert assign(client, h, sp["id"], exo["id"], FULL_ACCESS_AS_APP_ID).status_code == 201
    r = client.delete(f"/v1.0/servicePrincipals/{sp['id']}", headers=h)
    assert r.status_code == 204, r.text
    graph_error(
        client.get(f"/v1.0/servicePrincipals/{sp['id']}", headers=h),
        404,
        "Request_ResourceNotFound",
    )
    granted = values(
        client.get(f"/v1.0/servicePrincipals/{exo['id']}/appRoleAssignedTo", headers=h)
    )
    assert all(a["principalId"] != sp["id"] for a in granted)
    assert client.get(f"/v1.0/applications/{app['id']}", headers=h).status_code == 200
    assert create_sp(client, h, app["appId"])["id"] != sp["id"]


def test_unknown_service_principal_is_404(client: httpx.Client, h: Headers) -> None:
    graph_error(
        client.get(f"/v1.0/servicePrincipals/{uuid.uuid4()}", headers=h),
        404,
        "Request_ResourceNotFound",
    )
    graph_error(
        client.get(f"/v1.0/servicePrincipals(appId='{uuid.uuid4()}')", headers=h),
        404,
        "Request_ResourceNotFound",
    )


# --- app role assignments -----------------------------------------------------------------------


def test_app_role_assigned_to(client: httpx.Client, h: Headers) -> None:
    _, sp = app_with_sp(client, h, "consented")
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    r = assign(client, h, sp["id"], exo["id"], FULL_ACCESS_AS_APP_ID)
    assert r.status_code == 201, r.text
    a = r.json()
    assert isinstance(a["id"], str) and a["id"] and not is_guid(a["id"])
    assert a["principalType"] == "ServicePrincipal"
    assert a["principalId"] == sp["id"]
    assert a["resourceId"] == exo["id"]
    assert a["appRoleId"] == FULL_ACCESS_AS_APP_ID
    assert a["principalDisplayName"] == "consented"
    assert a["resourceDisplayName"] == exo["displayName"]
    resource_side = client.get(f"/v1.0/servicePrincipals/{exo['id']}/appRoleAssignedTo", headers=h)
    principal_side = client.get(f"/v1.0/servicePrincipals/{sp['id']}/appRoleAssignments", headers=h)
    assert resource_side.status_code == principal_side.status_code == 200
    assert a["id"] in [x["id"] for x in resource_side.json()["value"]]
    assert [x["id"] for x in principal_side.json()["value"]] == [a["id"]]


def test_duplicate_assignment_is_400(client: httpx.Client, h: Headers) -> None:
    _, sp = app_with_sp(client, h)
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    assert assign(client, h, sp["id"], exo["id"], FULL_ACCESS_AS_APP_ID).status_code == 201
    error = graph_error(
        assign(client, h, sp["id"], exo["id"], FULL_ACCESS_AS_APP_ID), 400, "Request_BadRequest"
    )
    assert error["message"] == "Permission being assigned already exists on the object."
    listed = client.get(f"/v1.0/servicePrincipals/{sp['id']}/appRoleAssignments", headers=h).json()[
        "value"
    ]
    assert len(listed) == 1


def test_unknown_app_role_is_400(client: httpx.Client, h: Headers) -> None:
    _, sp = app_with_sp(client, h)
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    error = graph_error(
        assign(client, h, sp["id"], exo["id"], str(uuid.uuid4())), 400, "Request_BadRequest"
    )
    assert error["message"].startswith("Permission being assigned was not found on application")


def test_assignment_from_principal_side(client: httpx.Client, h: Headers) -> None:
    _, sp = app_with_sp(client, h)
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    r = client.post(
        f"/v1.0/servicePrincipals/{sp['id']}/appRoleAssignments",
        json={
            "principalId": sp["id"],
            "resourceId": exo["id"],
            "appRoleId": EXCHANGE_MANAGE_AS_APP_ID,
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    a = r.json()
    assert (a["principalId"], a["resourceId"], a["appRoleId"]) == (
        sp["id"],
        exo["id"],
        EXCHANGE_MANAGE_AS_APP_ID,
    )
    granted = client.get(
        f"/v1.0/servicePrincipals/{exo['id']}/appRoleAssignedTo", headers=h
    ).json()["value"]
    assert a["id"] in [x["id"] for x in granted]


def test_assignments_filter_by_principal(client: httpx.Client, h: Headers) -> None:
    _, one = app_with_sp(client, h, "one")
    _, two = app_with_sp(client, h, "two")
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    a1 = assign(client, h, one["id"], exo["id"], FULL_ACCESS_AS_APP_ID).json()
    assign(client, h, two["id"], exo["id"], FULL_ACCESS_AS_APP_ID)
    r = client.get(
        f"/v1.0/servicePrincipals/{exo['id']}/appRoleAssignedTo",
        params={"$filter": f"principalId eq {one['id']}"},
        headers=h,
    )
    assert [a["id"] for a in values(r)] == [a1["id"]]


def test_assignment_with_unknown_principal_is_404(client: httpx.Client, h: Headers) -> None:
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    r = assign(client, h, str(uuid.uuid4()), exo["id"], FULL_ACCESS_AS_APP_ID)
    graph_error(r, 404, "Request_ResourceNotFound")


def test_delete_assignment(client: httpx.Client, h: Headers) -> None:
    _, sp = app_with_sp(client, h)
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    aid = assign(client, h, sp["id"], exo["id"], FULL_ACCESS_AS_APP_ID).json()["id"]
    r = client.delete(f"/v1.0/servicePrincipals/{exo['id']}/appRoleAssignedTo/{aid}", headers=h)
    assert r.status_code == 204, r.text
    assert r.content == b""
    granted = client.get(
        f"/v1.0/servicePrincipals/{exo['id']}/appRoleAssignedTo", headers=h
    ).json()["value"]
    assert aid not in [x["id"] for x in granted]
    assert (
        client.get(f"/v1.0/servicePrincipals/{sp['id']}/appRoleAssignments", headers=h).json()[
            "value"
        ]
        == []
    )
    again = client.delete(f"/v1.0/servicePrincipals/{exo['id']}/appRoleAssignedTo/{aid}", headers=h)
    graph_error(again, 404, "Request_ResourceNotFound")


def test_consent_puts_role_in_new_tokens_only(
    client: httpx.Client, h: Headers, emulator: Emulator
) -> None:
    app, sp = app_with_sp(client, h)
    secret = add_password(client, h, app["id"])["secretText"]
    before = token_response(client, emulator, app["appId"], secret, EXCHANGE)
    assert before.status_code == 200
    assert "roles" not in claims(before.json()["access_token"])
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    assert assign(client, h, sp["id"], exo["id"], FULL_ACCESS_AS_APP_ID).status_code == 201
    after = token_response(client, emulator, app["appId"], secret, EXCHANGE)
    assert claims(after.json()["access_token"])["roles"] == ["full_access_as_app"]


# --- query options ------------------------------------------------------------------------------


def test_filter_app_id_eq(client: httpx.Client, h: Headers) -> None:
    a, _ = create_app(client, h, "one"), create_app(client, h, "two")
    r = client.get("/v1.0/applications", params={"$filter": f"appId eq '{a['appId']}'"}, headers=h)
    assert r.json()["@odata.context"].endswith("$metadata#applications")
    assert [x["id"] for x in values(r)] == [a["id"]]
    none = client.get(
        "/v1.0/applications", params={"$filter": f"appId eq '{uuid.uuid4()}'"}, headers=h
    )
    assert values(none) == []


def test_filter_display_name_eq_is_case_insensitive(client: httpx.Client, h: Headers) -> None:
    a = create_app(client, h, "MIM Mailbox Access")
    create_app(client, h, "MIM Mailbox Access 2")
    r = client.get(
        "/v1.0/applications", params={"$filter": "displayName eq 'mim mailbox access'"}, headers=h
    )
    assert [x["id"] for x in values(r)] == [a["id"]]


def test_filter_display_name_with_quote(client: httpx.Client, h: Headers) -> None:
    a = create_app(client, h, "O'Brien's app")
    r = client.get(
        "/v1.0/applications", params={"$filter": "displayName eq 'O''Brien''s app'"}, headers=h
    )
    assert [x["id"] for x in values(r)] == [a["id"]]


def test_filter_startswith(client: httpx.Client, h: Headers) -> None:
    ids = {create_app(client, h, "mim-one")["id"], create_app(client, h, "MIM two")["id"]}
    create_app(client, h, "other mim")
    r = client.get(
        "/v1.0/applications", params={"$filter": "startswith(displayName,'mim')"}, headers=h
    )
    assert {x["id"] for x in values(r)} == ids


def test_filter_tags_any(client: httpx.Client, h: Headers) -> None:
    tagged = create_app(client, h, "tagged", tags=["mim-o365", "x"])
    create_app(client, h, "untagged", tags=["y"])
    r = client.get("/v1.0/applications", params={"$filter": "tags/any(t:t eq 'x')"}, headers=h)
    assert [x["id"] for x in values(r)] == [tagged["id"]]


def test_filter_and(client: httpx.Client, h: Headers) -> None:
    both = create_app(client, h, "mim both", tags=["x"])
    create_app(client, h, "mim only name", tags=["y"])
    create_app(client, h, "only tag", tags=["x"])
    f = "startswith(displayName,'mim') and tags/any(t:t eq 'x')"
    r = client.get("/v1.0/applications", params={"$filter": f}, headers=h)
    assert [x["id"] for x in values(r)] == [both["id"]]
    f2 = f"appId eq '{both['appId']}' and displayName eq 'not it'"
    assert values(client.get("/v1.0/applications", params={"$filter": f2}, headers=h)) == []


def test_filter_unsupported_property_is_400(client: httpx.Client, h: Headers) -> None:
    r = client.get(
        "/v1.0/applications", params={"$filter": "requiredResourceAccess eq 'x'"}, headers=h
    )
    graph_error(r, 400, "Request_UnsupportedQuery")
    r = client.get("/v1.0/applications", params={"$filter": "colour eq 'blue'"}, headers=h)
    graph_error(r, 400, "Request_UnsupportedQuery")


def test_filter_syntax_error_is_400(client: httpx.Client, h: Headers) -> None:
    r = client.get("/v1.0/applications", params={"$filter": "displayName eq"}, headers=h)
    graph_error(r, 400)
    r = client.get("/v1.0/applications", params={"$filter": "displayName eq 'x' and"}, headers=h)
    graph_error(r, 400)


def test_select(client: httpx.Client, h: Headers) -> None:
    create_app(client, h)
    r = client.get("/v1.0/applications", params={"$select": "id,appId"}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@odata.context"].endswith("$metadata#applications(id,appId)")
    assert body["value"]
    assert all(set(x) == {"id", "appId"} for x in body["value"])


def test_select_on_single_application(client: httpx.Client, h: Headers) -> None:
    app = create_app(client, h)
    r = client.get(
        f"/v1.0/applications/{app['id']}", params={"$select": "id,displayName"}, headers=h
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k for k in body if not k.startswith("@odata.")} == {"id", "displayName"}


def test_select_unknown_property_is_400(client: httpx.Client, h: Headers) -> None:
    graph_error(client.get("/v1.0/applications", params={"$select": "id,colour"}, headers=h), 400)
    app = create_app(client, h)
    graph_error(
        client.get(f"/v1.0/applications/{app['id']}", params={"$select": "colour"}, headers=h), 400
    )


@pytest.mark.parametrize("top", ["1000", "0", "-1"])
def test_top_out_of_range_is_400(client: httpx.Client, h: Headers, top: str) -> None:
    r = client.get("/v1.0/applications", params={"$top": top}, headers=h)
    graph_error(r, 400, "Request_UnsupportedQuery" if top == "1000" else None)


def test_top_not_a_number_is_400(client: httpx.Client, h: Headers) -> None:
    graph_error(client.get("/v1.0/applications", params={"$top": "ten"}, headers=h), 400)


def test_top_999_is_allowed(client: httpx.Client, h: Headers) -> None:
    assert values(client.get("/v1.0/applications", params={"$top": "999"}, headers=h))


def test_paging_follows_next_links(client: httpx.Client, h: Headers) -> None:
    created = {create_app(client, h, f"paged {i:02}")["id"] for i in range(25)}
    total = len(values(client.get("/v1.0/applications", params={"$top": "999"}, headers=h)))
    assert total >= 25
    r = client.get("/v1.0/applications", params={"$top": "10"}, headers=h)
    first = r.json()
    assert len(values(r)) == 10
    assert first["@odata.nextLink"].startswith("https://emulator.test/v1.0/applications?")
    seen_ids: list[str] = [x["id"] for x in first["value"]]
    link: str | None = first["@odata.nextLink"]
    pages = 1
    while link is not None:
        r = client.get(link, headers=h)
        page = r.json()
        assert 1 <= len(values(r)) <= 10
        seen_ids += [x["id"] for x in page["value"]]
        link = page.get("@odata.nextLink")
        pages += 1
        assert pages < 10
    assert len(seen_ids) == total == len(set(seen_ids))
    assert created <= set(seen_ids)
    assert pages == -(-total // 10)


def test_paging_keeps_filter_and_select(client: httpx.Client, h: Headers) -> None:
    for i in range(5):
        create_app(client, h, f"keep {i}")
    create_app(client, h, "other")
    params = {"$filter": "startswith(displayName,'keep')", "$select": "id,displayName", "$top": "2"}
    r = client.get("/v1.0/applications", params=params, headers=h)
    names = [x["displayName"] for x in values(r)]
    link = r.json().get("@odata.nextLink")
    while link:
        r = client.get(link, headers=h)
        assert all(set(x) == {"id", "displayName"} for x in values(r))
        names += [x["displayName"] for x in values(r)]
        link = r.json().get("@odata.nextLink")
    assert sorted(names) == [f"keep {i}" for i in range(5)]


def test_no_next_link_when_everything_fits(client: httpx.Client, h: Headers) -> None:
    r = client.get("/v1.0/applications", headers=h)
    assert "@odata.nextLink" not in r.json()
    assert values(r)


def test_bad_skiptoken_is_400(client: httpx.Client, h: Headers) -> None:
    graph_error(client.get("/v1.0/applications", params={"$skiptoken": "garbage!"}, headers=h), 400)


def test_search_needs_consistency_level(client: httpx.Client, h: Headers) -> None:
    found = create_app(client, h, "searchable mailbox app")
    create_app(client, h, "something else")
    params = {"$search": '"displayName:mailbox"'}
    r = client.get("/v1.0/applications", params=params, headers=h)
    graph_error(r, 400, "Request_UnsupportedQuery")
    r = client.get(
        "/v1.0/applications", params=params, headers={**h, "ConsistencyLevel": "eventual"}
    )
    assert [x["id"] for x in values(r)] == [found["id"]]


def test_count_needs_consistency_level(client: httpx.Client, h: Headers) -> None:
    create_app(client, h, "counted")
    params = {"$count": "true", "$filter": "displayName eq 'counted'"}
    r = client.get(
        "/v1.0/applications", params=params, headers={**h, "ConsistencyLevel": "eventual"}
    )
    assert len(values(r)) == 1
    assert r.json()["@odata.count"] == 1
    r = client.get("/v1.0/applications", params=params, headers=h)
    assert len(values(r)) == 1
    assert "@odata.count" not in r.json()


def test_count_is_total_not_page_size(client: httpx.Client, h: Headers) -> None:
    for i in range(3):
        create_app(client, h, f"cnt {i}")
    params = {"$count": "true", "$filter": "startswith(displayName,'cnt')", "$top": "1"}
    r = client.get(
        "/v1.0/applications", params=params, headers={**h, "ConsistencyLevel": "eventual"}
    )
    assert len(values(r)) == 1
    assert r.json()["@odata.count"] == 3


def test_ne_needs_advanced_query(client: httpx.Client, h: Headers) -> None:
    keep = create_app(client, h, "ne keep")
    create_app(client, h, "ne drop")
    f = "startswith(displayName,'ne ') and displayName ne 'ne drop'"
    graph_error(
        client.get("/v1.0/applications", params={"$filter": f}, headers=h),
        400,
        "Request_UnsupportedQuery",
    )
    r = client.get(
        "/v1.0/applications",
        params={"$filter": f, "$count": "true"},
        headers={**h, "ConsistencyLevel": "eventual"},
    )
    assert [x["id"] for x in values(r)] == [keep["id"]]


def test_endswith_needs_advanced_query(client: httpx.Client, h: Headers) -> None:
    r = client.get(
        "/v1.0/applications", params={"$filter": "endswith(displayName,'app')"}, headers=h
    )
    graph_error(r, 400, "Request_UnsupportedQuery")


# --- authorization ------------------------------------------------------------------------------


def app_token(
    client: httpx.Client, emulator: Emulator, app: JSON, secret: str, scope: str = GRAPH
) -> Headers:
    r = token_response(client, emulator, app["appId"], secret, scope)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_app_without_graph_roles_is_denied(
    client: httpx.Client, h: Headers, emulator: Emulator
) -> None:
    app, _ = app_with_sp(client, h, "powerless")
    secret = add_password(client, h, app["id"])["secretText"]
    weak = app_token(client, emulator, app, secret)
    graph_error(client.get("/v1.0/applications", headers=weak), 403, "Authorization_RequestDenied")
    graph_error(
        client.get(f"/v1.0/applications/{app['id']}", headers=weak),
        403,
        "Authorization_RequestDenied",
    )
    r = client.post("/v1.0/applications", json={"displayName": "sneaky"}, headers=weak)
    graph_error(r, 403, "Authorization_RequestDenied")
    r = client.post(f"/v1.0/applications/{app['id']}/addPassword", json={}, headers=weak)
    graph_error(r, 403, "Authorization_RequestDenied")
    names = [x["displayName"] for x in client.get("/v1.0/applications", headers=h).json()["value"]]
    assert "sneaky" not in names


def test_read_role_allows_reads_not_writes(
    client: httpx.Client, h: Headers, emulator: Emulator
) -> None:
    app, sp = app_with_sp(client, h, "reader")
    secret = add_password(client, h, app["id"])["secretText"]
    old = app_token(client, emulator, app, secret)
    graph = sp_by_app_id(client, h, GRAPH_APP_ID)
    assert assign(client, h, sp["id"], graph["id"], APPLICATION_READ_ALL_ID).status_code == 201
    # A token issued before consent keeps its (missing) roles.
    graph_error(client.get("/v1.0/applications", headers=old), 403, "Authorization_RequestDenied")
    reader = app_token(client, emulator, app, secret)
    assert claims(reader["Authorization"][7:])["roles"] == ["Application.Read.All"]
    assert any(
        x["id"] == app["id"] for x in values(client.get("/v1.0/applications", headers=reader))
    )
    assert client.get(f"/v1.0/applications/{app['id']}", headers=reader).status_code == 200
    r = client.post("/v1.0/applications", json={"displayName": "still not"}, headers=reader)
    graph_error(r, 403, "Authorization_RequestDenied")
    r = client.patch(f"/v1.0/applications/{app['id']}", json={"notes": "x"}, headers=reader)
    graph_error(r, 403, "Authorization_RequestDenied")


def grant_graph_roles(client: httpx.Client, h: Headers, sp: JSON, *roles: str) -> None:
    graph = sp_by_app_id(client, h, GRAPH_APP_ID)
    ids = {r["value"]: r["id"] for r in graph["appRoles"]}
    for value in roles:
        assert assign(client, h, sp["id"], graph["id"], ids[value]).status_code == 201


def test_assigning_roles_needs_application_read_too(
    client: httpx.Client, h: Headers, emulator: Emulator
) -> None:
    app, sp = app_with_sp(client, h, "consent giver")
    secret = add_password(client, h, app["id"])["secretText"]
    _, target = app_with_sp(client, h, "consent target")
    exo = sp_by_app_id(client, h, EXCHANGE_APP_ID)
    grant_graph_roles(client, h, sp, "AppRoleAssignment.ReadWrite.All")
    only_assign = app_token(client, emulator, app, secret)
    r = assign(client, only_assign, target["id"], exo["id"], FULL_ACCESS_AS_APP_ID)
    graph_error(r, 403, "Authorization_RequestDenied")
    grant_graph_roles(client, h, sp, "Application.Read.All")
    both = app_token(client, emulator, app, secret)
    assert assign(client, both, target["id"], exo["id"], FULL_ACCESS_AS_APP_ID).status_code == 201


def test_owned_by_manages_only_its_own_apps(
    client: httpx.Client, h: Headers, emulator: Emulator
) -> None:
    app, sp = app_with_sp(client, h, "owner")
    secret = add_password(client, h, app["id"])["secretText"]
    grant_graph_roles(client, h, sp, "Application.ReadWrite.OwnedBy")
    owner = app_token(client, emulator, app, secret)
    mine = create_app(client, owner, "owned")
    assert (
        client.patch(
            f"/v1.0/applications/{mine['id']}", json={"notes": "ok"}, headers=owner
        ).status_code
        == 204
    )
    assert (
        client.post(
            f"/v1.0/applications/{mine['id']}/addPassword", json={}, headers=owner
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/v1.0/servicePrincipals", json={"appId": mine["appId"]}, headers=owner
        ).status_code
        == 201
    )
    foreign = create_app(client, h, "not owned")
    r = client.patch(f"/v1.0/applications/{foreign['id']}", json={"notes": "no"}, headers=owner)
    graph_error(r, 403, "Authorization_RequestDenied")
    r = client.post(f"/v1.0/applications/{foreign['id']}/addPassword", json={}, headers=owner)
    graph_error(r, 403, "Authorization_RequestDenied")
    r = client.delete(f"/v1.0/applications/{foreign['id']}", headers=owner)
    graph_error(r, 403, "Authorization_RequestDenied")
    assert client.get(f"/v1.0/applications/{foreign['id']}", headers=h).json()["notes"] is None


def test_exchange_token_on_graph_is_401(client: httpx.Client, emulator: Emulator) -> None:
    exo = app_token(
        client,
        emulator,
        {"appId": emulator.admin_client_id},
        emulator.admin_client_secret,
        EXCHANGE,
    )
    r = client.get("/v1.0/applications", headers=exo)
    graph_error(r, 401, "InvalidAuthenticationToken")


def test_missing_authorization_is_401(client: httpx.Client) -> None:
    graph_error(client.get("/v1.0/applications"), 401, "InvalidAuthenticationToken")
    graph_error(client.get("/v1.0/organization", headers={"Authorization": "Bearer "}), 401)


def test_garbage_token_is_401(client: httpx.Client) -> None:
    r = client.get("/v1.0/applications", headers={"Authorization": "Bearer not.a.jwt"})
    graph_error(r, 401, "InvalidAuthenticationToken")


def test_token_of_another_emulator_is_401(client: httpx.Client, clock: FakeClock) -> None:
    other = Emulator(seed=99, clock=clock)
    foreign = admin_headers(http(other), other)
    graph_error(
        client.get("/v1.0/applications", headers=foreign), 401, "InvalidAuthenticationToken"
    )


def test_expired_token_is_401(client: httpx.Client, h: Headers, clock: FakeClock) -> None:
    assert client.get("/v1.0/organization", headers=h).status_code == 200
    clock.advance(3600)
    graph_error(client.get("/v1.0/organization", headers=h), 401, "InvalidAuthenticationToken")


# --- routing, organization, users ---------------------------------------------------------------


def test_unknown_segment_is_odata_error(client: httpx.Client, h: Headers) -> None:
    r = client.get("/v1.0/nonexistent", headers=h)
    assert 400 <= r.status_code < 500
    graph_error(r, r.status_code)


def test_wrong_method_is_405(client: httpx.Client, h: Headers) -> None:
    graph_error(client.delete("/v1.0/organization", headers=h), 405)


def test_organization(client: httpx.Client, h: Headers, emulator: Emulator) -> None:
    r = client.get("/v1.0/organization", headers=h)
    orgs = values(r)
    assert len(orgs) == 1
    assert orgs[0]["id"] == emulator.tenant_id
    initial = [d for d in orgs[0]["verifiedDomains"] if d["isInitial"]]
    assert [d["name"] for d in initial] == ["contoso.onmicrosoft.com"]


def test_get_user_by_upn(client: httpx.Client, h: Headers, emulator: Emulator) -> None:
    r = client.get(f"/v1.0/users/{emulator.mailbox}", headers=h)
    assert r.status_code == 200, r.text
    user = r.json()
    assert user["@odata.context"].endswith("#users/$entity")
    assert user["mail"] == "MIMService@contoso.onmicrosoft.com"
    assert user["userPrincipalName"] == "MIMService@contoso.onmicrosoft.com"
    assert client.get(f"/v1.0/users/{user['id']}", headers=h).json()["id"] == user["id"]


def test_get_user_is_case_insensitive(client: httpx.Client, h: Headers) -> None:
    a = client.get("/v1.0/users/MIMService@contoso.onmicrosoft.com", headers=h)
    b = client.get("/v1.0/users/mimservice@CONTOSO.onmicrosoft.com", headers=h)
    assert a.status_code == b.status_code == 200
    assert a.json()["id"] == b.json()["id"]


def test_get_user_select(client: httpx.Client, h: Headers) -> None:
    r = client.get(
        "/v1.0/users/MIMService@contoso.onmicrosoft.com",
        params={"$select": "id,userPrincipalName,mail,proxyAddresses"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k for k in body if not k.startswith("@odata.")} == {
        "id",
        "userPrincipalName",
        "mail",
        "proxyAddresses",
    }
    assert "SMTP:MIMService@contoso.onmicrosoft.com" in body["proxyAddresses"]


def test_unknown_user_is_404(client: httpx.Client, h: Headers) -> None:
    r = client.get("/v1.0/users/nobody@contoso.onmicrosoft.com", headers=h)
    error = graph_error(r, 404, "Request_ResourceNotFound")
    assert "nobody@contoso.onmicrosoft.com" in error["message"]


def test_user_without_mailbox_has_no_mail(client: httpx.Client, h: Headers) -> None:
    r = client.get("/v1.0/users/contractor@contoso.onmicrosoft.com", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["mail"] is None


# --- groups -------------------------------------------------------------------------------------


def test_security_group(client: httpx.Client, h: Headers) -> None:
    r = client.post(
        "/v1.0/groups",
        json={
            "displayName": "MIM mailbox readers",
            "mailNickname": "mim-mailbox-readers",
            "mailEnabled": False,
            "securityEnabled": True,
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    group = r.json()
    assert group["@odata.context"].endswith("#groups/$entity")
    assert is_guid(group["id"])
    assert group["mailEnabled"] is False
    assert group["securityEnabled"] is True
    assert group["mail"] is None
    found = client.get(
        "/v1.0/groups", params={"$filter": "displayName eq 'mim mailbox readers'"}, headers=h
    )
    assert [g["id"] for g in values(found)] == [group["id"]]
    assert (
        client.get(f"/v1.0/groups/{group['id']}", headers=h).json()["displayName"]
        == "MIM mailbox readers"
    )
    members = client.get(f"/v1.0/groups/{group['id']}/members", headers=h)
    assert values(members) == []


def test_group_without_required_property_is_400(client: httpx.Client, h: Headers) -> None:
    r = client.post(
        "/v1.0/groups",
        json={"displayName": "x", "mailEnabled": False, "securityEnabled": True},
        headers=h,
    )
    graph_error(r, 400, "Request_BadRequest")


@pytest.mark.parametrize(
    "extra", [{"groupTypes": "Unified"}, {"groupTypes": 5}, {"groupTypes": [5]}, {"description": 5}]
)
def test_group_with_bad_property_value_is_400(
    client: httpx.Client, h: Headers, extra: JSON
) -> None:
    body = {
        "displayName": "g",
        "mailNickname": "g",
        "mailEnabled": False,
        "securityEnabled": True,
        **extra,
    }
    graph_error(client.post("/v1.0/groups", json=body, headers=h), 400, "Request_BadRequest")
    assert (
        values(client.get("/v1.0/groups", params={"$filter": "displayName eq 'g'"}, headers=h))
        == []
    )


def test_unknown_group_is_404(client: httpx.Client, h: Headers) -> None:
    graph_error(
        client.get(f"/v1.0/groups/{uuid.uuid4()}", headers=h), 404, "Request_ResourceNotFound"
    )
    graph_error(
        client.get(f"/v1.0/groups/{uuid.uuid4()}/members", headers=h),
        404,
        "Request_ResourceNotFound",
    )
