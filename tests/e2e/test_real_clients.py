"""The production client libraries, built by mim-o365's own factories, against the HTTPS emulator."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest
from azure.identity import DeviceCodeCredential
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.application import Application
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.models.required_resource_access import RequiredResourceAccess
from msgraph.generated.models.resource_access import ResourceAccess
from msgraph.generated.models.service_principal import ServicePrincipal

from mim_o365 import Cloud, Secret
from mim_o365._gateways import _clients
from mim_o365._wellknown import EXCHANGE_APP_ID, FULL_ACCESS_AS_APP_ID
from mim_o365.emulator import EmulatorServer
from mim_o365.emulator._seed import AZURE_CLI_APP_ID


def _cloud(server: EmulatorServer) -> Cloud:
    cloud = Cloud.from_file(server.cloud_file)
    assert cloud.ca_file == server.ca_file
    return cloud


def test_msal_confidential_client_gets_signed_graph_token(server: EmulatorServer) -> None:
    cloud = _cloud(server)
    app = _clients.confidential_client(
        cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
    )
    result = app.acquire_token_for_client([cloud.graph_scope])
    assert "access_token" in result, result
    jwks = server.emulator.tokens.jwks()["keys"][0]
    key = jwt.PyJWK(jwks).key
    # the emulator runs on a fake clock: check the signature and audience, not the times
    claims = jwt.decode(
        result["access_token"],
        key,
        algorithms=["RS256"],
        audience="https://graph.microsoft.com",
        options={"verify_iat": False, "verify_nbf": False, "verify_exp": False},
    )
    assert claims["tid"] == server.tenant_id
    assert claims["appid"] == server.admin_client_id
    assert "Application.ReadWrite.All" in claims["roles"]


def test_msal_reports_wrong_secret_with_aadsts_code(server: EmulatorServer) -> None:
    cloud = _cloud(server)
    app = _clients.confidential_client(
        cloud, server.tenant_id, server.admin_client_id, Secret("not-the-secret")
    )
    result = app.acquire_token_for_client([cloud.graph_scope])
    assert result["error"] == "invalid_client"
    assert 7000215 in result["error_codes"]


def test_pinned_session_ignores_requests_ca_bundle(
    server: EmulatorServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    bogus = tmp_path / "other-ca.pem"
    bogus.write_text("not a certificate\n")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(bogus))
    cloud = _cloud(server)
    app = _clients.confidential_client(
        cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
    )
    assert "access_token" in app.acquire_token_for_client([cloud.graph_scope])


def test_azure_identity_sync_credential(server: EmulatorServer) -> None:
    cloud = _cloud(server)
    cred = _clients.client_secret_credential(
        cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
    )
    token = cred.get_token(cloud.exchange_scope)
    assert (
        jwt.decode(token.token, options={"verify_signature": False})["aud"]
        == "https://outlook.office365.com"
    )


def test_device_code_admin_is_auto_approved(server: EmulatorServer) -> None:
    cloud = _cloud(server)
    prompts: list[str] = []
    cred = DeviceCodeCredential(
        client_id=AZURE_CLI_APP_ID,
        tenant_id=server.tenant_id,
        authority=cloud.authority,
        disable_instance_discovery=True,
        connection_verify=str(cloud.ca_file),
        prompt_callback=lambda uri, code, expires: prompts.append(code),
    )
    token = cred.get_token(cloud.graph_scope)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert prompts, "the user code must be shown to the admin"
    assert claims["upn"] == f"admin@{server.tenant_domain}"
    assert "Application.ReadWrite.All" in claims["scp"].split()


def test_msgraph_sdk_full_directory_flow(server: EmulatorServer) -> None:
    """Create app, add a password, create its SP, consent full_access_as_app, and read it all back."""
    cloud = _cloud(server)

    async def flow() -> dict[str, Any]:
        cred = _clients.async_client_secret_credential(
            cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
        )
        async with cred:
            graph = _clients.graph_client(cloud, cred)
            app = await graph.applications.post(
                Application(
                    display_name="MIM Service mailbox client access",
                    sign_in_audience="AzureADMyOrg",
                    tags=["mim-o365"],
                    required_resource_access=[
                        RequiredResourceAccess(
                            resource_app_id=EXCHANGE_APP_ID,
                            resource_access=[ResourceAccess(id=FULL_ACCESS_AS_APP_ID, type="Role")],
                        )
                    ],
                )
            )
            assert app is not None and app.id and app.app_id
            pw = await graph.applications.by_application_id(app.id).add_password.post(
                AddPasswordPostRequestBody(
                    password_credential=PasswordCredential(display_name="mim-o365")
                )
            )
            assert pw is not None and pw.secret_text and pw.hint == pw.secret_text[:3]
            sp = await graph.service_principals.post(ServicePrincipal(app_id=app.app_id))
            assert sp is not None and sp.id
            exo = await graph.service_principals_with_app_id(EXCHANGE_APP_ID).get()
            assert exo is not None and exo.app_roles
            role = next(r for r in exo.app_roles if r.value == "full_access_as_app")
            assigned = await graph.service_principals.by_service_principal_id(
                exo.id or ""
            ).app_role_assigned_to.post(
                AppRoleAssignment(principal_id=sp.id, resource_id=exo.id, app_role_id=role.id)
            )
            assert assigned is not None
            # a second consent is the duplicate-assignment 400
            with pytest.raises(ODataError) as dup:
                await graph.service_principals.by_service_principal_id(
                    exo.id or ""
                ).app_role_assigned_to.post(
                    AppRoleAssignment(principal_id=sp.id, resource_id=exo.id, app_role_id=role.id)
                )
            assert dup.value.response_status_code == 400
            back = await graph.applications.by_application_id(app.id).get()
            by_app_id = await graph.applications_with_app_id(app.app_id).get()
            grants = await graph.service_principals.by_service_principal_id(
                sp.id
            ).app_role_assignments.get()
            return {
                "app": back,
                "alt": by_app_id,
                "grants": grants,
                "secret": pw.secret_text,
                "app_id": app.app_id,
                "role_id": role.id,
            }

    result = asyncio.run(flow())  # noqa: TID251 - the test drives its own loop
    app = result["app"]
    assert app.display_name == "MIM Service mailbox client access"
    assert app.sign_in_audience == "AzureADMyOrg"
    assert [c.hint for c in app.password_credentials] == [result["secret"][:3]]
    assert app.password_credentials[0].secret_text is None
    assert result["alt"].id == app.id
    assert [g.app_role_id for g in result["grants"].value] == [result["role_id"]]
    # The new app's own secret now gets an Exchange token carrying the consented role.
    msal_app = _clients.confidential_client(
        cloud, server.tenant_id, result["app_id"], Secret(result["secret"])
    )
    token = msal_app.acquire_token_for_client([cloud.exchange_scope])
    assert jwt.decode(token["access_token"], options={"verify_signature": False})["roles"] == [
        "full_access_as_app"
    ]
