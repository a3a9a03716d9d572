"""State of an emulated tenant: plain dataclasses, no HTTP, no I/O.

``Replica`` carries the eventual-consistency state of an object: it is invisible to the first
``reads_left`` reads and before ``visible_at``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Replica:
    """When an object becomes visible to readers other than its creator's write."""

    reads_left: int = 0
    visible_at: datetime | None = None


@dataclass
class PasswordCredential:
    """A client secret. Only its hash is kept; the text is returned once by addPassword."""

    key_id: str
    display_name: str | None
    start: datetime
    end: datetime
    hint: str
    secret_sha256: str
    active: Replica = field(default_factory=Replica)


@dataclass
class Application:
    """An app registration."""

    id: str
    app_id: str
    display_name: str
    created: datetime
    sign_in_audience: str = "AzureADandPersonalMicrosoftAccount"
    required_resource_access: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    description: str | None = None
    identifier_uris: list[str] = field(default_factory=list)
    web: dict[str, Any] = field(default_factory=dict)
    public_client_redirect_uris: list[str] = field(default_factory=list)
    is_fallback_public_client: bool | None = None
    password_credentials: list[PasswordCredential] = field(default_factory=list)
    created_by_app_id: str | None = None
    replica: Replica = field(default_factory=Replica)


@dataclass
class ServicePrincipal:
    """An enterprise application (the app's identity in this tenant)."""

    id: str
    app_id: str
    display_name: str
    created: datetime
    app_owner_organization_id: str
    app_roles: list[dict[str, Any]] = field(default_factory=list)
    oauth2_permission_scopes: list[dict[str, Any]] = field(default_factory=list)
    service_principal_names: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    account_enabled: bool = True
    public_client: bool = False
    # Directory roles held (e.g. "Exchange Administrator"), as display names.
    directory_roles: list[str] = field(default_factory=list)
    replica: Replica = field(default_factory=Replica)


@dataclass
class AppRoleAssignment:
    """An application permission granted to a service principal (admin consent)."""

    id: str
    app_role_id: str
    principal_id: str
    principal_display_name: str
    resource_id: str
    resource_display_name: str
    created: datetime
    # Consent propagation: roles appear in tokens only once this replica is visible.
    effective: Replica = field(default_factory=Replica)


@dataclass
class User:
    """A user; ``has_mailbox`` says whether Exchange Online holds a mailbox for it."""

    id: str
    user_principal_name: str
    display_name: str
    mail: str | None
    has_mailbox: bool
    directory_roles: list[str] = field(default_factory=list)


@dataclass
class Group:
    """A group (security, mail-enabled security or Microsoft 365)."""

    id: str
    display_name: str
    mail_nickname: str
    created: datetime
    mail_enabled: bool = False
    security_enabled: bool = True
    mail: str | None = None
    description: str | None = None
    group_types: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)


@dataclass
class Tenant:
    """The organization."""

    id: str
    display_name: str
    initial_domain: str
    created: datetime


@dataclass
class OrgChange:
    """A Set-OrganizationConfig write on its way to the servers that enforce it."""

    name: str
    value: Any
    replica: Replica = field(default_factory=Replica)


@dataclass
class OrganizationConfig:
    """Exchange organization settings that govern EWS.

    ``ews_enabled``/``ews_allowed_app_ids`` are what Get-OrganizationConfig shows at once;
    ``effective_*`` are what EWS enforces, after the policy delay.
    """

    ews_enabled: bool | None = True
    ews_allowed_app_ids: str | None = None
    effective_ews_enabled: bool | None = True
    effective_ews_allowed_app_ids: str | None = None
    pending: list[OrgChange] = field(default_factory=list)


@dataclass
class MailGroup:
    """Exchange's view of a mail-enabled security group; ``group_id`` is its directory object id."""

    guid: str
    group_id: str
    name: str
    alias: str
    primary_smtp: str
    created: datetime
    notes: str | None = None


@dataclass
class AccessPolicy:
    """An application access policy (New-ApplicationAccessPolicy)."""

    identity: str
    app_id: str
    scope_id: str
    scope_name: str
    scope_kind: str
    access_right: str
    description: str | None
    created: datetime
    effective: Replica = field(default_factory=Replica)


@dataclass
class ExoServicePrincipal:
    """Exchange's pointer to an Entra service principal (New-ServicePrincipal)."""

    identity: str
    app_id: str
    object_id: str
    display_name: str


@dataclass
class ManagementScope:
    """A management scope with a recipient filter (New-ManagementScope)."""

    identity: str
    name: str
    recipient_restriction_filter: str


@dataclass
class RoleAssignment:
    """An RBAC for Applications role assignment (New-ManagementRoleAssignment -App)."""

    identity: str
    name: str
    role: str
    app_object_id: str
    custom_resource_scope: str | None
    recipient_group_scope: str | None
    created: datetime
    effective: Replica = field(default_factory=Replica)


@dataclass
class ExchangeState:
    """Exchange Online: organization config, groups, policies and RBAC for Applications."""

    org: OrganizationConfig = field(default_factory=OrganizationConfig)
    groups: dict[str, MailGroup] = field(default_factory=dict)
    policies: dict[str, AccessPolicy] = field(default_factory=dict)
    service_principals: dict[str, ExoServicePrincipal] = field(default_factory=dict)
    scopes: dict[str, ManagementScope] = field(default_factory=dict)
    role_assignments: dict[str, RoleAssignment] = field(default_factory=dict)


@dataclass
class VaultSecretVersion:
    """One version of a Key Vault secret. ``value`` is the secret text (the state file is owner-only)."""

    version: str
    value: str
    created: datetime
    updated: datetime
    enabled: bool = True
    content_type: str | None = None
    expires: datetime | None = None
    not_before: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class VaultSecret:
    """A Key Vault secret: its versions, oldest first, and its soft-delete state."""

    name: str
    versions: list[VaultSecretVersion] = field(default_factory=list)
    deleted: datetime | None = None
    scheduled_purge: datetime | None = None


@dataclass
class Vault:
    """A Key Vault (access-policy model).

    ``access`` maps a principal's object id (service principal or user) to the secret permissions
    it holds (``get``, ``list``, ``set``, ``delete``, ``recover``, ``backup``, ``restore``, ``purge``).
    ``secrets`` is keyed by lower-case name: Key Vault names are case-insensitive.
    """

    name: str
    created: datetime
    access: dict[str, list[str]] = field(default_factory=dict)
    secrets: dict[str, VaultSecret] = field(default_factory=dict)


@dataclass
class DirectoryState:
    """Everything the emulated tenant holds; what ``--state`` persists."""

    tenant: Tenant
    applications: dict[str, Application] = field(default_factory=dict)
    service_principals: dict[str, ServicePrincipal] = field(default_factory=dict)
    app_role_assignments: dict[str, AppRoleAssignment] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    admin_client_id: str = ""
    admin_client_secret: str = ""
    issued_secret_hashes: list[str] = field(default_factory=list)
    exchange: ExchangeState = field(default_factory=ExchangeState)
    vaults: dict[str, Vault] = field(default_factory=dict)
