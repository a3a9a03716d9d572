"""The Graph conformance checker can pass and can fail (no network)."""

from __future__ import annotations

import copy
import importlib.util
import pathlib
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from tests.conformance.graph_openapi import DEFAULT_SPEC_PATH, ConformanceError, GraphSpec

APP_ID = "0f6c6c1a-5b52-4f0e-9a3e-3b1c2d4e5f60"
OBJECT_ID = "7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6"
KEY_ID = "e2a1c3b4-d5f6-4a7b-8c9d-0e1f2a3b4c5d"
REQUEST_ID = "3c9b2a1d-0e4f-4a5b-9c6d-7e8f9a0b1c2d"


@pytest.fixture(scope="module")
def spec() -> GraphSpec:
    return GraphSpec.load()


def application_body() -> dict[str, Any]:
    """A POST /applications 201 body shaped like Graph's, newer properties left out."""
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications/$entity",
        "id": OBJECT_ID,
        "deletedDateTime": None,
        "appId": APP_ID,
        "applicationTemplateId": None,
        "createdDateTime": "2026-08-01T10:00:00Z",
        "displayName": "MIM connector",
        "description": None,
        "groupMembershipClaims": None,
        "identifierUris": [],
        "isDeviceOnlyAuthSupported": None,
        "isFallbackPublicClient": None,
        "nativeAuthenticationApisEnabled": None,
        "notes": None,
        "publisherDomain": "contoso.onmicrosoft.com",
        "serviceManagementReference": None,
        "signInAudience": "AzureADMyOrg",
        "tags": [],
        "tags@odata.type": "#Collection(String)",
        "tokenEncryptionKeyId": None,
        "uniqueName": None,
        "samlMetadataUrl": None,
        "defaultRedirectUri": None,
        "certification": None,
        "optionalClaims": None,
        "servicePrincipalLockConfiguration": None,
        "requestSignatureVerification": None,
        "addIns": [],
        "api": {
            "acceptMappedClaims": None,
            "knownClientApplications": [],
            "requestedAccessTokenVersion": None,
            "oauth2PermissionScopes": [],
            "preAuthorizedApplications": [],
        },
        "appRoles": [],
        "info": {
            "logoUrl": None,
            "marketingUrl": None,
            "privacyStatementUrl": None,
            "supportUrl": None,
            "termsOfServiceUrl": None,
        },
        "keyCredentials": [],
        "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
        "passwordCredentials": [
            {
                "customKeyIdentifier": None,
                "displayName": "mim",
                "endDateTime": "2028-08-01T10:00:00.1234567Z",
                "hint": "abc",
                "keyId": KEY_ID,
                "secretText": None,
                "startDateTime": "2026-08-01T10:00:00Z",
            }
        ],
        "publicClient": {"redirectUris": []},
        "requiredResourceAccess": [
            {
                "resourceAppId": "00000002-0000-0ff1-ce00-000000000000",
                "resourceAccess": [{"id": "dc890d15-9560-4a4c-9b7f-a736ec74ec40", "type": "Role"}],
            }
        ],
        "spa": {"redirectUris": []},
        "verifiedPublisher": {
            "addedDateTime": None,
            "displayName": None,
            "verifiedPublisherId": None,
        },
        "web": {
            "homePageUrl": None,
            "implicitGrantSettings": {
                "enableAccessTokenIssuance": False,
                "enableIdTokenIssuance": False,
            },
            "logoutUrl": None,
            "redirectUriSettings": [{"index": None, "uri": "https://localhost/callback"}],
            "redirectUris": ["https://localhost/callback"],
        },
    }


def error_body() -> dict[str, Any]:
    return {
        "error": {
            "code": "Request_ResourceNotFound",
            "message": "Resource 'x' does not exist or one of its queried reference-property "
            "objects are not present.",
            "innerError": {
                "date": "2026-08-01T10:00:00",
                "request-id": REQUEST_ID,
                "client-request-id": REQUEST_ID,
            },
        }
    }


# ----------------------------------------------------------------------------- loading


def test_load_is_cached_and_reads_the_copied_fixture(spec: GraphSpec) -> None:
    assert GraphSpec.load() is spec
    assert GraphSpec.load(DEFAULT_SPEC_PATH) is spec
    assert len(spec.operations) == 22


def test_module_is_importable_by_path() -> None:
    path = pathlib.Path(__file__).with_name("graph_openapi.py")
    module_spec = importlib.util.spec_from_file_location("graph_openapi_by_path", path)
    assert module_spec is not None
    assert module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    assert module.DEFAULT_SPEC_PATH == DEFAULT_SPEC_PATH


def test_every_translated_schema_is_valid_json_schema(spec: GraphSpec) -> None:
    for operation in spec.operations:
        for _, pointer in operation.responses:
            if pointer is not None:
                name = pointer.rsplit("/", 1)[-1]
                jsonschema.Draft202012Validator.check_schema(spec.translated_schema(name))
    jsonschema.Draft202012Validator.check_schema(spec.translated_schema("microsoft.graph.user"))


# ----------------------------------------------------------------------------- entities


def test_well_formed_application_passes(spec: GraphSpec) -> None:
    assert spec.validate_response("POST", "/applications", 201, application_body()) is True
    assert spec.validate_response("GET", f"/applications/{OBJECT_ID}", 200, application_body())


def test_bytes_body_is_decoded(spec: GraphSpec) -> None:
    assert spec.validate_response("GET", "/organization", 200, b'{"value": []}')


def test_wrong_type_fails_and_names_the_pointer(spec: GraphSpec) -> None:
    body = application_body()
    body["signInAudience"] = 5
    with pytest.raises(ConformanceError) as caught:
        spec.validate_response("POST", "/applications", 201, body)
    error = caught.value
    assert (error.method, error.path, error.status) == ("POST", "/applications", 201)
    assert [pointer for pointer, _ in error.problems] == ["/signInAudience"]
    message = str(error)
    assert "POST /applications -> 201" in message
    assert "at /signInAudience" in message
    assert "is not of type" in message


def test_bad_guid_inside_password_credentials_fails(spec: GraphSpec) -> None:
    body = application_body()
    body["passwordCredentials"][0]["keyId"] = "not-a-guid"
    with pytest.raises(ConformanceError, match=r"at /passwordCredentials/0/keyId: ") as caught:
        spec.validate_response("POST", "/applications", 201, body)
    assert {p for p, _ in caught.value.problems} == {"/passwordCredentials/0/keyId"}
    # Both the file's pattern and the uuid format reject it.
    assert {m.rsplit("[", 1)[-1] for _, m in caught.value.problems} == {"pattern]", "format]"}


def test_invalid_calendar_date_fails_the_date_time_format(spec: GraphSpec) -> None:
    body = application_body()
    body["createdDateTime"] = "2026-02-30T10:00:00Z"  # matches the pattern, no such day
    with pytest.raises(ConformanceError, match=r"at /createdDateTime: .*date-time"):
        spec.validate_response("POST", "/applications", 201, body)


def test_undeclared_non_object_property_fails_by_name(spec: GraphSpec) -> None:
    # createdByAppId is newer than the subset (GRAPH-README.md, "Cross-check").
    body = application_body()
    body["createdByAppId"] = APP_ID
    with pytest.raises(ConformanceError, match=r"undeclared property 'createdByAppId'"):
        spec.validate_response("POST", "/applications", 201, body)


def test_odata_annotations_are_ignored_at_any_depth(spec: GraphSpec) -> None:
    body = application_body()
    body["@odata.etag"] = 'W/"1"'
    body["api"]["@odata.type"] = "#microsoft.graph.apiApplication"
    body["passwordCredentials"][0]["keyId@odata.type"] = "#Guid"
    assert spec.validate_response("POST", "/applications", 201, body)


def test_null_complex_properties_follow_the_nullable_refs_option(spec: GraphSpec) -> None:
    body = application_body()
    assert body["certification"] is None
    assert spec.validate_response("POST", "/applications", 201, body)
    strict = GraphSpec.load(nullable_refs=False)
    assert strict is not spec
    with pytest.raises(ConformanceError, match=r"at /certification: "):
        strict.validate_response("POST", "/applications", 201, body)


def test_flag_enum_accepts_member_lists(spec: GraphSpec) -> None:
    body = application_body()
    body["nativeAuthenticationApisEnabled"] = "all"
    assert spec.validate_response("POST", "/applications", 201, body)
    body["nativeAuthenticationApisEnabled"] = "everything"
    with pytest.raises(ConformanceError, match=r"at /nativeAuthenticationApisEnabled: "):
        spec.validate_response("POST", "/applications", 201, body)


# ----------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    "path",
    [
        f"/applications/{OBJECT_ID}/addPassword",
        f"/applications/{OBJECT_ID}/microsoft.graph.addPassword",
        # Not in the subset: mapped to the id form, same operation.
        f"/applications(appId='{APP_ID}')/addPassword",
        f"/applications(appId='{APP_ID}')/microsoft.graph.addPassword",
        f"/applications(appId=%27{APP_ID}%27)/addPassword",
    ],
)
def test_add_password_paths_map_to_one_operation(spec: GraphSpec, path: str) -> None:
    operation = spec.operation_for("POST", path)
    assert operation is not None
    assert operation.operation_id == "application_addPassword"
    assert operation.path == "/applications/{application-id}/microsoft.graph.addPassword"
    credential = copy.deepcopy(application_body()["passwordCredentials"][0])
    credential["@odata.context"] = (
        "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.passwordCredential"
    )
    credential["secretText"] = "s3cr3t-generated-by-the-emulator"
    assert spec.validate_response("POST", path, 200, credential)


def test_alternate_key_get_maps(spec: GraphSpec) -> None:
    operation = spec.operation_for("GET", f"/applications(appId='{APP_ID}')")
    assert operation is not None
    assert operation.path == "/applications(appId='{appId}')"
    assert operation.operation_id == "application_GetApplicationGraphBPreAppId"
    operation = spec.operation_for("get", f"/servicePrincipals(appId='{APP_ID}')")
    assert operation is not None
    assert operation.path == "/servicePrincipals(appId='{appId}')"


def test_app_role_assigned_to_delete_maps(spec: GraphSpec) -> None:
    operation = spec.operation_for(
        "DELETE", f"/servicePrincipals/{OBJECT_ID}/appRoleAssignedTo/xyz"
    )
    assert operation is not None
    assert operation.operation_id == "servicePrincipal_DeleteAppRoleAssignedTo"
    assert spec.validate_response(
        "DELETE", f"/servicePrincipals/{OBJECT_ID}/appRoleAssignedTo/xyz", 204, None
    )


def test_operations_outside_the_subset_are_none(spec: GraphSpec) -> None:
    assert spec.operation_for("DELETE", f"/servicePrincipals/{OBJECT_ID}") is None
    assert spec.validate_response("DELETE", f"/servicePrincipals/{OBJECT_ID}", 204, None) is False
    assert spec.operation_for("GET", "/applications/delta") is None
    assert spec.operation_for("GET", "/applications/$count") is None
    assert spec.operation_for("GET", "/me") is None


def test_user_principal_name_is_percent_decoded(spec: GraphSpec) -> None:
    for path in (
        "/users/MIMService@contoso.onmicrosoft.com",
        "/users/MIMService%40contoso.onmicrosoft.com",
        "/v1.0/users/MIMService%40contoso.onmicrosoft.com?$select=id",
    ):
        operation = spec.operation_for("GET", path)
        assert operation is not None
        assert operation.operation_id == "user_GetUser"


# ----------------------------------------------------------------------------- no content


def test_204_with_a_body_fails(spec: GraphSpec) -> None:
    path = f"/applications/{OBJECT_ID}"
    assert spec.validate_response("DELETE", path, 204, None)
    assert spec.validate_response("DELETE", path, 204, b"")
    with pytest.raises(ConformanceError, match=r"DELETE /applications/.* -> 204: .*not empty"):
        spec.validate_response("DELETE", path, 204, {"id": OBJECT_ID})
    # PATCH's 2XX declares the entity, but a 204 can never carry it.
    assert spec.validate_response("PATCH", path, 204, None)
    with pytest.raises(ConformanceError, match="not empty"):
        spec.validate_response("PATCH", path, 204, application_body())


def test_declared_content_requires_a_body(spec: GraphSpec) -> None:
    with pytest.raises(ConformanceError, match="expected a JSON body"):
        spec.validate_response("POST", "/applications", 201, None)


# ----------------------------------------------------------------------------- errors


def test_odata_error_body_passes(spec: GraphSpec) -> None:
    spec.validate_error(error_body())
    assert spec.validate_response("GET", f"/applications/{OBJECT_ID}", 404, error_body())
    # Outside the subset: False, but the error body is still checked.
    assert spec.validate_response("GET", "/me", 404, error_body()) is False


def test_malformed_error_bodies_fail(spec: GraphSpec) -> None:
    with pytest.raises(ConformanceError, match=r"at /error: 'x' is not of type 'object'"):
        spec.validate_error({"error": "x"})
    with pytest.raises(ConformanceError, match=r"at /error: 'message' is a required property"):
        spec.validate_error({"error": {"code": "Request_BadRequest"}})
    with pytest.raises(ConformanceError, match=r"(?s)GET /applications/x -> 400: .*at /error: "):
        spec.validate_response("GET", "/applications/x", 400, {"error": "x"})
    with pytest.raises(ConformanceError, match=r"GET /me -> 401: no subset operation"):
        spec.validate_response("GET", "/me", 401, {"error": "x"})


# ----------------------------------------------------------------------------- collections


def test_collection_with_next_link_passes(spec: GraphSpec) -> None:
    body = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications",
        "@odata.count": 0,
        "@odata.nextLink": "https://graph.microsoft.com/v1.0/applications?$skiptoken=abc",
        "value": [],
    }
    assert spec.validate_response("GET", "/applications", 200, body)
    body["value"] = [application_body()]
    assert spec.validate_response("GET", "/applications?$top=1", 200, body)


def test_declared_annotations_are_still_checked(spec: GraphSpec) -> None:
    with pytest.raises(ConformanceError, match=r"at /@odata.nextLink: "):
        spec.validate_response("GET", "/applications", 200, {"value": [], "@odata.nextLink": 5})
    with pytest.raises(ConformanceError, match=r"at /value/0/signInAudience: "):
        spec.validate_response(
            "GET", "/applications", 200, {"value": [{"id": "1", "signInAudience": 5}]}
        )


def test_derived_types_are_selected_by_odata_type(spec: GraphSpec) -> None:
    path = f"/groups/{OBJECT_ID}/members"
    members = {
        "value": [
            {
                "@odata.type": "#microsoft.graph.user",
                "id": OBJECT_ID,
                "displayName": "MIM Service",
                "userPrincipalName": "MIMService@contoso.onmicrosoft.com",
            },
            {"@odata.type": "#microsoft.graph.servicePrincipal", "id": "2", "appId": APP_ID},
        ]
    }
    assert spec.validate_response("GET", path, 200, members)
    untyped = {"value": [{"id": OBJECT_ID, "displayName": "MIM Service"}]}
    with pytest.raises(ConformanceError, match=r"at /value/0/displayName: .*lack @odata.type"):
        spec.validate_response("GET", path, 200, untyped)
    wrong = {"value": [{"@odata.type": "#microsoft.graph.passwordCredential", "id": "1"}]}
    with pytest.raises(ConformanceError, match=r"at /value/0/@odata.type: .*nor derived from it"):
        spec.validate_response("GET", path, 200, wrong)
