"""Seed data: first-party service principals with their real role and scope ids, and a tenant.

Ids are Microsoft's (see tests/conformance/well-known-ids.md); display texts are ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mim_o365._wellknown import (
    EWS_ACCESS_AS_USER_ALL_ID,
    EXCHANGE_APP_ID,
    EXCHANGE_MANAGE_AS_APP_ID,
    FULL_ACCESS_AS_APP_ID,
    GRAPH_APP_ID,
    GRAPH_USER_READ_SCOPE_ID,
)

AZURE_CLI_APP_ID: Final = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
KEYVAULT_APP_ID: Final = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
# Azure Key Vault's one delegated permission.
KEYVAULT_SCOPES: Final[dict[str, str]] = {
    "user_impersonation": "f53da476-18e3-4152-8e01-aec403e6edc0"
}

# value -> id, Microsoft Graph application permissions (app roles)
GRAPH_ROLES: Final[dict[str, str]] = {
    "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    "Application.ReadWrite.OwnedBy": "18a4783c-866b-4cc7-a460-3d5e5662c884",
    "AppRoleAssignment.ReadWrite.All": "06b708a9-e830-4db3-a914-8e69da51d44f",
    "Directory.Read.All": "7ab1d382-f21e-4acd-a863-ba3e13f7da61",
    "Directory.ReadWrite.All": "19dbc75e-c2e2-444c-a770-ec69d8559fc7",
    "Group.Create": "bf7b1a76-6e77-406b-b258-bf5c7720e98f",
    "Group.Read.All": "5b567255-7703-4780-807c-7be8301ae99b",
    "Group.ReadWrite.All": "62a82d76-70ea-41e2-9197-370581804d09",
    "Organization.Read.All": "498476ce-e0fe-48b0-b801-37ba7e2685c6",
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    "User.ReadBasic.All": "97235f07-e226-4f63-ace3-39588e11d3a1",
}

# value -> id, Microsoft Graph delegated permissions (oauth2 permission scopes)
GRAPH_SCOPES: Final[dict[str, str]] = {
    "Application.Read.All": "c79f8feb-a9db-4090-85f9-90d820caa0eb",
    "Application.ReadWrite.All": "bdfbf15f-ee85-4955-8675-146e8e5296b5",
    "AppRoleAssignment.ReadWrite.All": "84bccea3-f856-4a8a-967b-dbe0a3d53a64",
    "Directory.Read.All": "06da0dbc-49e2-44d2-8312-53f166ab848a",
    "Directory.ReadWrite.All": "c5366453-9fb0-48a5-a156-24f0c49a4b84",
    "Group.Read.All": "5f8c59db-677d-491f-a6b8-5f174b11ec1d",
    "Group.ReadWrite.All": "4e46008b-f24c-477d-8fff-7bb4ec7aafe0",
    "Organization.Read.All": "4908d5b9-3fb2-4b1e-9336-1888b7937185",
    "User.Read": GRAPH_USER_READ_SCOPE_ID,
    "User.Read.All": "a154be20-db9c-4678-8ab7-66f6cc099a59",
    "User.ReadBasic.All": "b340eb25-3456-403f-be2f-af7a0d370277",
    "offline_access": "7427e0e9-2fba-42fe-b0c0-848c9e6a8182",
    "openid": "37f7f235-527c-4136-accd-4a02d197296e",
    "profile": "14dad69e-099b-42c9-810b-d002981feec1",
}

EXCHANGE_ROLES: Final[dict[str, str]] = {
    "full_access_as_app": FULL_ACCESS_AS_APP_ID,
    "Exchange.ManageAsApp": EXCHANGE_MANAGE_AS_APP_ID,
}
EXCHANGE_SCOPES: Final[dict[str, str]] = {"EWS.AccessAsUser.All": EWS_ACCESS_AS_USER_ALL_ID}

# Roles the seeded automation admin holds: everything the whole flow needs, app-only.
ADMIN_GRAPH_ROLES: Final = (
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "Organization.Read.All",
    "User.Read.All",
    "Group.ReadWrite.All",
)
ADMIN_EXCHANGE_ROLES: Final = ("Exchange.ManageAsApp",)


@dataclass(frozen=True)
class FirstParty:
    """A Microsoft service principal every tenant holds."""

    app_id: str
    display_name: str
    names: tuple[str, ...]
    roles: dict[str, str]
    scopes: dict[str, str]


FIRST_PARTY: Final = (
    FirstParty(
        app_id=GRAPH_APP_ID,
        display_name="Microsoft Graph",
        names=(
            GRAPH_APP_ID,
            "https://graph.microsoft.com",
            "https://graph.microsoft.com/",
            "https://canary.graph.microsoft.com",
            "https://dod-graph.microsoft.us",
            "https://graph.microsoft.us",
            "https://microsoftgraph.chinacloudapi.cn",
        ),
        roles=GRAPH_ROLES,
        scopes=GRAPH_SCOPES,
    ),
    FirstParty(
        app_id=EXCHANGE_APP_ID,
        display_name="Office 365 Exchange Online",
        names=(
            EXCHANGE_APP_ID,
            "https://outlook.office365.com",
            "https://outlook.office.com",
            "https://outlook.office365.us",
            "https://outlook-dod.office365.us",
            "https://partner.outlook.cn",
        ),
        roles=EXCHANGE_ROLES,
        scopes=EXCHANGE_SCOPES,
    ),
    # Key Vault checks the audience exactly: no trailing-slash spellings here.
    FirstParty(
        app_id=KEYVAULT_APP_ID,
        display_name="Azure Key Vault",
        names=(
            KEYVAULT_APP_ID,
            "https://vault.azure.net",
            "https://vault.usgovcloudapi.net",
            "https://vault.azure.cn",
        ),
        roles={},
        scopes=KEYVAULT_SCOPES,
    ),
)

TENANT_DOMAIN: Final = "contoso.onmicrosoft.com"
TENANT_NAME: Final = "Contoso"

# (local part, display name, has mailbox)
USERS: Final = (
    ("MIMService", "MIM Service", True),
    ("admin", "Contoso Administrator", True),
    ("alex.wilber", "Alex Wilber", True),
    ("megan.bowen", "Megan Bowen", True),
    ("helpdesk", "Helpdesk", True),
    ("noreply", "No Reply", True),
    ("contractor", "External Contractor (no mailbox)", False),
)
ADMIN_USER: Final = "admin"
# The Key Vault every seeded tenant holds; the automation admin and admin@ may use its secrets.
VAULT_NAME: Final = "contoso-vault"
NO_MAILBOX_USER: Final = "contractor"
