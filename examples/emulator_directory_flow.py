"""The directory half of a MIM mailbox app registration, against an emulated tenant.

Starts the emulator on loopback HTTPS, then uses msgraph-sdk and MSAL exactly as they are built
for a real tenant (only the cloud description differs) to create the application with Office 365
Exchange Online ``full_access_as_app``, its service principal, admin consent and a client secret,
and finally proves the secret works by getting an Exchange token that carries the role.

Run: .venv/bin/python examples/emulator_directory_flow.py
"""

from __future__ import annotations

import asyncio

import jwt
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.application import Application
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.models.required_resource_access import RequiredResourceAccess
from msgraph.generated.models.resource_access import ResourceAccess
from msgraph.generated.models.service_principal import ServicePrincipal

from mim_o365 import Cloud, Secret
from mim_o365._gateways import _clients
from mim_o365._wellknown import EXCHANGE_APP_ID, FULL_ACCESS_AS_APP
from mim_o365.emulator import EmulatorServer


async def _register(
    cloud: Cloud, tenant: str, admin_id: str, admin_secret: Secret
) -> tuple[str, Secret]:
    credential = _clients.async_client_secret_credential(cloud, tenant, admin_id, admin_secret)
    async with credential:
        graph = _clients.graph_client(cloud, credential)
        exo = await graph.service_principals_with_app_id(EXCHANGE_APP_ID).get()
        if exo is None or not exo.id or not exo.app_roles:
            raise SystemExit("the tenant has no Office 365 Exchange Online service principal")
        role = next(r for r in exo.app_roles if r.value == FULL_ACCESS_AS_APP)
        app = await graph.applications.post(
            Application(
                display_name="MIM Service mailbox client access",
                sign_in_audience="AzureADMyOrg",
                required_resource_access=[
                    RequiredResourceAccess(
                        resource_app_id=EXCHANGE_APP_ID,
                        resource_access=[ResourceAccess(id=role.id, type="Role")],
                    )
                ],
            )
        )
        assert app is not None and app.id and app.app_id
        sp = await graph.service_principals.post(ServicePrincipal(app_id=app.app_id))
        assert sp is not None
        await graph.service_principals.by_service_principal_id(exo.id).app_role_assigned_to.post(
            AppRoleAssignment(principal_id=sp.id, resource_id=exo.id, app_role_id=role.id)
        )
        password = await graph.applications.by_application_id(app.id).add_password.post(
            AddPasswordPostRequestBody(
                password_credential=PasswordCredential(display_name="mim-o365 example")
            )
        )
        assert password is not None and password.secret_text
        return app.app_id, Secret(password.secret_text)


def main(server: EmulatorServer) -> dict[str, object]:
    """Register an app in ``server``'s tenant; return its ids, its secret (as a Secret) and token roles."""
    cloud = Cloud.from_file(server.cloud_file)
    app_id, secret = asyncio.run(  # noqa: TID251 - a script's single entry point
        _register(
            cloud, server.tenant_id, server.admin_client_id, Secret(server.admin_client_secret)
        )
    )
    msal_app = _clients.confidential_client(cloud, server.tenant_id, app_id, secret)
    token = msal_app.acquire_token_for_client([cloud.exchange_scope])
    roles = jwt.decode(token["access_token"], options={"verify_signature": False}).get("roles", [])
    return {
        "ApplicationId": app_id,
        "TenantId": server.tenant_id,
        "ClientSecret": secret,
        "roles": roles,
    }


if __name__ == "__main__":
    with EmulatorServer() as emulated:
        result = main(emulated)
    print(f"ApplicationId: {result['ApplicationId']}")
    print(f"TenantId:      {result['TenantId']}")
    secret = result["ClientSecret"]
    assert isinstance(secret, Secret)
    print(f"ClientSecret:  {secret.reveal()}   (emulated tenant; gone when this script ends)")
    print(f"Exchange token roles: {', '.join(map(str, result['roles']))}")  # type: ignore[call-overload]
