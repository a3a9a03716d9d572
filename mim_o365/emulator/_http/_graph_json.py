"""Directory objects as Graph v1.0 writes them (checked against Microsoft's OpenAPI description)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mim_o365.emulator._http._common import iso
from mim_o365.emulator._models import (
    Application,
    AppRoleAssignment,
    Group,
    PasswordCredential,
    ServicePrincipal,
    Tenant,
    User,
)

JSON = dict[str, Any]


def password_json(cred: PasswordCredential, secret_text: str | None = None) -> JSON:
    """A passwordCredential; ``secretText`` only in addPassword's answer."""
    return {
        "customKeyIdentifier": None,
        "displayName": cred.display_name,
        "endDateTime": iso(cred.end),
        "hint": cred.hint,
        "keyId": cred.key_id,
        "secretText": secret_text,
        "startDateTime": iso(cred.start),
    }


def application_json(app: Application, tenant: Tenant) -> JSON:
    """An application entity."""
    web = {
        "homePageUrl": app.web.get("homePageUrl"),
        "logoutUrl": app.web.get("logoutUrl"),
        "redirectUris": list(app.web.get("redirectUris", [])),
        "implicitGrantSettings": {
            "enableAccessTokenIssuance": False,
            "enableIdTokenIssuance": False,
        },
        "redirectUriSettings": [{"uri": u, "index": None} for u in app.web.get("redirectUris", [])],
    }
    return {
        "id": app.id,
        "deletedDateTime": None,
        "appId": app.app_id,
        "applicationTemplateId": None,
        "disabledByMicrosoftStatus": None,
        "createdDateTime": iso(app.created),
        "displayName": app.display_name,
        "description": app.description,
        "groupMembershipClaims": None,
        "identifierUris": list(app.identifier_uris),
        "isDeviceOnlyAuthSupported": None,
        "isFallbackPublicClient": app.is_fallback_public_client,
        "notes": app.notes,
        "publisherDomain": tenant.initial_domain,
        "serviceManagementReference": None,
        "signInAudience": app.sign_in_audience,
        "tags": list(app.tags),
        "tokenEncryptionKeyId": None,
        "samlMetadataUrl": None,
        "defaultRedirectUri": None,
        "certification": None,
        "optionalClaims": None,
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
        "passwordCredentials": [password_json(c) for c in app.password_credentials],
        "publicClient": {"redirectUris": list(app.public_client_redirect_uris)},
        "requiredResourceAccess": [
            {
                "resourceAppId": r["resourceAppId"],
                "resourceAccess": [dict(a) for a in r["resourceAccess"]],
            }
            for r in app.required_resource_access
        ],
        "verifiedPublisher": {
            "displayName": None,
            "verifiedPublisherId": None,
            "addedDateTime": None,
        },
        "web": web,
        "spa": {"redirectUris": []},
    }


APPLICATION_FILTERABLE = {
    "id": "scalar",
    "appId": "scalar",
    "displayName": "scalar",
    "signInAudience": "scalar",
    "publisherDomain": "scalar",
    "createdDateTime": "scalar",
    "notes": "scalar",
    "description": "scalar",
    "tags": "collection",
    "identifierUris": "collection",
}


def service_principal_json(sp: ServicePrincipal) -> JSON:
    """A servicePrincipal entity."""
    return {
        "id": sp.id,
        "deletedDateTime": None,
        "accountEnabled": sp.account_enabled,
        "alternativeNames": [],
        "appDisplayName": sp.display_name,
        "appDescription": None,
        "appId": sp.app_id,
        "applicationTemplateId": None,
        "appOwnerOrganizationId": sp.app_owner_organization_id,
        "appRoleAssignmentRequired": False,
        "description": None,
        "disabledByMicrosoftStatus": None,
        "displayName": sp.display_name,
        "homepage": None,
        "loginUrl": None,
        "logoutUrl": None,
        "notes": None,
        "notificationEmailAddresses": [],
        "preferredSingleSignOnMode": None,
        "preferredTokenSigningKeyThumbprint": None,
        "replyUrls": [],
        "servicePrincipalNames": list(sp.service_principal_names),
        "servicePrincipalType": "Application",
        "signInAudience": "AzureADMyOrg" if sp.app_owner_organization_id else "AzureADMultipleOrgs",
        "tags": list(sp.tags),
        "tokenEncryptionKeyId": None,
        "samlSingleSignOnSettings": None,
        "addIns": [],
        "appRoles": [dict(r) for r in sp.app_roles],
        "info": {
            "logoUrl": None,
            "marketingUrl": None,
            "privacyStatementUrl": None,
            "supportUrl": None,
            "termsOfServiceUrl": None,
        },
        "keyCredentials": [],
        "oauth2PermissionScopes": [dict(s) for s in sp.oauth2_permission_scopes],
        "passwordCredentials": [],
        "resourceSpecificApplicationPermissions": [],
        "verifiedPublisher": {
            "displayName": None,
            "verifiedPublisherId": None,
            "addedDateTime": None,
        },
    }


SERVICE_PRINCIPAL_FILTERABLE = {
    "id": "scalar",
    "appId": "scalar",
    "displayName": "scalar",
    "accountEnabled": "scalar",
    "servicePrincipalType": "scalar",
    "appOwnerOrganizationId": "scalar",
    "servicePrincipalNames": "collection",
    "tags": "collection",
}


def assignment_json(a: AppRoleAssignment) -> JSON:
    """An appRoleAssignment."""
    return {
        "id": a.id,
        "deletedDateTime": None,
        "appRoleId": a.app_role_id,
        "createdDateTime": iso(a.created),
        "principalDisplayName": a.principal_display_name,
        "principalId": a.principal_id,
        "principalType": "ServicePrincipal",
        "resourceDisplayName": a.resource_display_name,
        "resourceId": a.resource_id,
    }


ASSIGNMENT_FILTERABLE = {"principalId": "scalar", "resourceId": "scalar", "appRoleId": "scalar"}


def user_json(user: User) -> JSON:
    """A user with Graph's default property set."""
    given, _, surname = user.display_name.partition(" ")
    return {
        "id": user.id,
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": given or None,
        "jobTitle": None,
        "mail": user.mail,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": surname or None,
        "userPrincipalName": user.user_principal_name,
    }


USER_SELECTABLE = {*user_json(User("", "", "", None, False)), "proxyAddresses", "accountEnabled"}


def user_select_json(user: User) -> JSON:
    """The user with the extra properties ``$select`` may ask for."""
    return {
        **user_json(user),
        "proxyAddresses": [f"SMTP:{user.mail}"] if user.mail else [],
        "accountEnabled": True,
    }


def group_json(group: Group) -> JSON:
    """A group."""
    return {
        "id": group.id,
        "deletedDateTime": None,
        "createdDateTime": iso(group.created),
        "description": group.description,
        "displayName": group.display_name,
        "groupTypes": list(group.group_types),
        "mail": group.mail,
        "mailEnabled": group.mail_enabled,
        "mailNickname": group.mail_nickname,
        "proxyAddresses": [f"SMTP:{group.mail}"] if group.mail else [],
        "securityEnabled": group.security_enabled,
        "securityIdentifier": None,
        "visibility": None,
    }


GROUP_FILTERABLE = {
    "id": "scalar",
    "displayName": "scalar",
    "mail": "scalar",
    "mailNickname": "scalar",
    "mailEnabled": "scalar",
    "securityEnabled": "scalar",
    "groupTypes": "collection",
}


def organization_json(tenant: Tenant) -> JSON:
    """The organization, with its initial domain."""
    return {
        "id": tenant.id,
        "deletedDateTime": None,
        "businessPhones": [],
        "city": None,
        "country": None,
        "countryLetterCode": "US",
        "createdDateTime": iso(tenant.created),
        "displayName": tenant.display_name,
        "onPremisesSyncEnabled": None,
        "preferredLanguage": "en",
        "state": None,
        "street": None,
        "technicalNotificationMails": [],
        "tenantType": "AAD",
        "assignedPlans": [],
        "provisionedPlans": [],
        "verifiedDomains": [
            {
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": True,
                "isInitial": True,
                "name": tenant.initial_domain,
                "type": "Managed",
            },
        ],
    }


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
APPLICATION_PROPERTIES = frozenset(
    application_json(Application("", "", "", _EPOCH), Tenant("", "", "", _EPOCH))
)
SERVICE_PRINCIPAL_PROPERTIES = frozenset(
    service_principal_json(ServicePrincipal("", "", "", _EPOCH, ""))
)
ASSIGNMENT_PROPERTIES = frozenset(
    assignment_json(AppRoleAssignment("", "", "", "", "", "", _EPOCH))
)
GROUP_PROPERTIES = frozenset(group_json(Group("", "", "", _EPOCH)))
ORGANIZATION_PROPERTIES = frozenset(organization_json(Tenant("", "", "", _EPOCH)))
