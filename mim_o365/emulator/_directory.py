"""The directory (Entra ID) backend: operations and invariants on :class:`DirectoryState`.

No HTTP here. Errors are :class:`EmulatorError` with Graph's status, code and message.
"""

from __future__ import annotations

import copy
import hashlib
import re
import secrets
import string
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mim_o365.emulator import _seed
from mim_o365.emulator._errors import EmulatorError, bad_request, denied, not_found
from mim_o365.emulator._ids import IdSource
from mim_o365.emulator._knobs import Knobs, seen
from mim_o365.emulator._models import (
    Application,
    AppRoleAssignment,
    DirectoryState,
    Group,
    PasswordCredential,
    Replica,
    ServicePrincipal,
    Tenant,
    User,
)

GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
SIGN_IN_AUDIENCES = (
    "AzureADMyOrg",
    "AzureADMultipleOrgs",
    "AzureADandPersonalMicrosoftAccount",
    "PersonalMicrosoftAccount",
)
DEFAULT_SECRET_LIFETIME = timedelta(days=730)  # addPassword's documented default: two years


@dataclass(frozen=True)
class Caller:
    """Who is calling, from a validated token."""

    app_id: str
    sp_id: str | None
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    user_id: str | None = None

    @property
    def delegated(self) -> bool:
        """A user's token rather than an application's."""
        return self.user_id is not None

    def has_any(self, *permissions: str) -> bool:
        """True when the token carries one of ``permissions`` (roles for apps, scopes for users)."""
        held = self.scopes if self.delegated else self.roles
        return any(p in held for p in permissions)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_guid(value: object, what: str) -> str:
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise bad_request(f"Invalid value specified for property '{what}' of resource.")
    return value.lower()


class Directory:
    """Entra ID operations on one tenant's state."""

    def __init__(
        self, state: DirectoryState, knobs: Knobs, ids: IdSource, now: Callable[[], datetime]
    ) -> None:
        self.state = state
        self.knobs = knobs
        self.ids = ids
        self._now = now
        self.lock = threading.RLock()

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def seeded(cls, knobs: Knobs, ids: IdSource, now: Callable[[], datetime]) -> Directory:
        """A new tenant with Microsoft's first-party service principals, users and admins."""
        created = now()
        state = DirectoryState(
            tenant=Tenant(ids.guid(), _seed.TENANT_NAME, _seed.TENANT_DOMAIN, created)
        )
        directory = cls(state, knobs, ids, now)
        tid = state.tenant.id
        for fp in _seed.FIRST_PARTY:
            roles = [
                {
                    "allowedMemberTypes": ["Application"],
                    "description": f"Allows the app to use {v} without a signed-in user.",
                    "displayName": v,
                    "id": i,
                    "isEnabled": True,
                    "origin": "Application",
                    "value": v,
                }
                for v, i in fp.roles.items()
            ]
            scopes = [
                {
                    "adminConsentDescription": f"Allows the app to use {v} as the signed-in user.",
                    "adminConsentDisplayName": v,
                    "id": i,
                    "isEnabled": True,
                    "type": "Admin",
                    "userConsentDescription": None,
                    "userConsentDisplayName": None,
                    "value": v,
                }
                for v, i in fp.scopes.items()
            ]
            sp = ServicePrincipal(
                id=ids.guid(),
                app_id=fp.app_id,
                display_name=fp.display_name,
                created=created,
                app_owner_organization_id="f8cdef31-a31e-4b4a-93e4-5f571e91255a",
                app_roles=roles,
                oauth2_permission_scopes=scopes,
                service_principal_names=list(fp.names),
            )
            state.service_principals[sp.id] = sp
        cli = ServicePrincipal(
            id=ids.guid(),
            app_id=_seed.AZURE_CLI_APP_ID,
            display_name="Microsoft Azure CLI",
            created=created,
            app_owner_organization_id="f8cdef31-a31e-4b4a-93e4-5f571e91255a",
            service_principal_names=[_seed.AZURE_CLI_APP_ID],
            public_client=True,
        )
        state.service_principals[cli.id] = cli
        for local, name, has_mailbox in _seed.USERS:
            upn = f"{local}@{_seed.TENANT_DOMAIN}"
            user = User(ids.guid(), upn, name, upn if has_mailbox else None, has_mailbox)
            if local == _seed.ADMIN_USER:
                user.directory_roles = ["Global Administrator"]
            state.users[user.id] = user
        # The automation admin: app-only credentials holding every role the flow needs.
        admin = Application(
            id=ids.guid(),
            app_id=ids.guid(),
            display_name="Contoso automation (mim-o365 admin)",
            created=created,
            sign_in_audience="AzureADMyOrg",
        )
        state.applications[admin.id] = admin
        admin_sp = ServicePrincipal(
            id=ids.guid(),
            app_id=admin.app_id,
            display_name=admin.display_name,
            created=created,
            app_owner_organization_id=tid,
            service_principal_names=[admin.app_id],
            directory_roles=["Exchange Administrator"],
        )
        state.service_principals[admin_sp.id] = admin_sp
        secret = directory._new_secret_text()
        admin.password_credentials.append(
            PasswordCredential(
                key_id=ids.guid(),
                display_name="automation",
                start=created,
                end=created + DEFAULT_SECRET_LIFETIME,
                hint=secret[:3],
                secret_sha256=_hash(secret),
            )
        )
        state.admin_client_id = admin.app_id
        state.admin_client_secret = secret
        # An unrelated app that already uses EWS: it sits on the allow list and must stay there.
        other = Application(
            id=ids.guid(),
            app_id=ids.guid(),
            display_name="Contoso Archive Connector",
            created=created,
            sign_in_audience="AzureADMyOrg",
        )
        state.applications[other.id] = other
        other_sp = ServicePrincipal(
            id=ids.guid(),
            app_id=other.app_id,
            display_name=other.display_name,
            created=created,
            app_owner_organization_id=tid,
            service_principal_names=[other.app_id],
        )
        state.service_principals[other_sp.id] = other_sp
        org = state.exchange.org
        org.ews_enabled = org.effective_ews_enabled = knobs.ews_enabled
        if knobs.ews_enabled is not None:
            org.ews_allowed_app_ids = org.effective_ews_allowed_app_ids = other.app_id
        graph = directory.sp_by_app_id(_seed.FIRST_PARTY[0].app_id)
        exo = directory.sp_by_app_id(_seed.FIRST_PARTY[1].app_id)
        if graph is None or exo is None:  # pragma: no cover - seeded just above
            raise RuntimeError("first-party service principals missing from the seed")
        for resource, values in (
            (graph, _seed.ADMIN_GRAPH_ROLES),
            (exo, _seed.ADMIN_EXCHANGE_ROLES),
        ):
            for value in values:
                role_id = next(r["id"] for r in resource.app_roles if r["value"] == value)
                a = AppRoleAssignment(
                    id=ids.opaque(),
                    app_role_id=role_id,
                    principal_id=admin_sp.id,
                    principal_display_name=admin_sp.display_name,
                    resource_id=resource.id,
                    resource_display_name=resource.display_name,
                    created=created,
                )
                state.app_role_assignments[a.id] = a
        return directory

    # --- secrets --------------------------------------------------------------------------

    def _new_secret_text(self) -> str:
        # Shape of Entra secrets: 3 chars, a digit, "Q~", then 34 chars (40 in all). Random, never
        # from the seeded generator, and never repeated within a tenant.
        alphabet = string.ascii_letters + string.digits + "~._-"
        while True:
            text = (
                "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(3))
                + secrets.choice(string.digits)
                + "Q~"
                + "".join(secrets.choice(alphabet) for _ in range(34))
            )
            digest = _hash(text)
            if digest not in self.state.issued_secret_hashes:
                self.state.issued_secret_hashes.append(digest)
                return text

    # --- reads with replication -----------------------------------------------------------

    def _visible(self, replica: Replica) -> bool:
        return seen(replica, self._now())

    def sp_by_app_id(self, app_id: str, *, replicated: bool = False) -> ServicePrincipal | None:
        """Service principal of ``app_id``; with ``replicated`` only a visible one (counts a read)."""
        app_id = app_id.lower()
        for sp in self.state.service_principals.values():
            if sp.app_id == app_id:
                if replicated and not self._visible(sp.replica):
                    return None
                return sp
        return None

    def sp_by_name(self, name: str) -> ServicePrincipal | None:
        """Resource service principal by one of its service principal names (a URI or appId)."""
        key = name.rstrip("/").lower()
        for sp in self.state.service_principals.values():
            if any(n.rstrip("/").lower() == key for n in sp.service_principal_names):
                return sp
        return None

    def app_by_app_id(self, app_id: str, *, replicated: bool = True) -> Application | None:
        """Application by client id; with ``replicated`` only a visible one (counts a read)."""
        app_id = app_id.lower()
        for app in self.state.applications.values():
            if app.app_id == app_id:
                if replicated and not self._visible(app.replica):
                    return None
                return app
        return None

    def get_application(self, ident: str, *, by_app_id: bool = False) -> Application:
        """A visible application by object id (or appId); 404 otherwise."""
        if by_app_id:
            app = self.app_by_app_id(ident)
        else:
            app = self.state.applications.get(ident.lower())
            if app is not None and not self._visible(app.replica):
                app = None
        if app is None:
            raise not_found(ident)
        return app

    def get_service_principal(self, ident: str, *, by_app_id: bool = False) -> ServicePrincipal:
        """A visible service principal by object id (or appId); 404 otherwise."""
        if by_app_id:
            sp = self.sp_by_app_id(ident, replicated=True)
        else:
            sp = self.state.service_principals.get(ident.lower())
            if sp is not None and not self._visible(sp.replica):
                sp = None
        if sp is None:
            raise not_found(ident)
        return sp

    def applications(self) -> Iterator[Application]:
        """Visible applications, oldest first."""
        return (a for a in list(self.state.applications.values()) if self._visible(a.replica))

    def service_principals(self) -> Iterator[ServicePrincipal]:
        """Visible service principals, oldest first."""
        return (s for s in list(self.state.service_principals.values()) if self._visible(s.replica))

    def get_user(self, ident: str) -> User:
        """User by object id or user principal name (case-insensitive)."""
        key = ident.lower()
        for user in self.state.users.values():
            if user.id == key or user.user_principal_name.lower() == key:
                return user
        raise not_found(ident)

    # --- authorization helpers ------------------------------------------------------------

    def _check_app_write(self, caller: Caller, app: Application) -> None:
        if caller.has_any("Application.ReadWrite.All", "Directory.ReadWrite.All"):
            return
        if (
            caller.has_any("Application.ReadWrite.OwnedBy")
            and app.created_by_app_id == caller.app_id
        ):
            return
        raise denied()

    # --- applications ---------------------------------------------------------------------

    _APP_WRITABLE = {
        "displayName",
        "signInAudience",
        "requiredResourceAccess",
        "tags",
        "notes",
        "description",
        "identifierUris",
        "web",
        "publicClient",
        "isFallbackPublicClient",
    }
    _APP_READ_ONLY = {"id", "appId", "createdDateTime", "publisherDomain", "deletedDateTime"}

    def _apply_app_fields(self, app: Application, body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key.startswith("@odata."):
                continue
            if key in self._APP_READ_ONLY:
                raise bad_request(f"Property '{key}' is read-only and cannot be set.")
            if key in ("passwordCredentials", "keyCredentials"):
                if value:
                    raise bad_request(
                        f"Property '{key}' cannot be set here; use addPassword/addKey."
                    )
                continue
            if key not in self._APP_WRITABLE:
                raise bad_request(f"Invalid property '{key}'.")
            if key == "displayName":
                if not isinstance(value, str) or not value.strip():
                    raise bad_request(
                        "Invalid value specified for property 'displayName' of resource 'Application'."
                    )
                app.display_name = value
            elif key == "signInAudience":
                if value not in SIGN_IN_AUDIENCES:
                    raise bad_request(
                        "Invalid value specified for property 'signInAudience' of resource 'Application'."
                    )
                app.sign_in_audience = value
            elif key == "requiredResourceAccess":
                app.required_resource_access = self._parse_rra(value)
            elif key in ("tags", "identifierUris"):
                if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                    raise bad_request(
                        f"Invalid value specified for property '{key}' of resource 'Application'."
                    )
                if key == "tags":
                    app.tags = list(value)
                else:
                    app.identifier_uris = list(value)
            elif key in ("notes", "description"):
                if value is not None and not isinstance(value, str):
                    raise bad_request(
                        f"Invalid value specified for property '{key}' of resource 'Application'."
                    )
                setattr(app, key, value)
            elif key == "web":
                if not isinstance(value, dict) or not self._valid_web(value):
                    raise bad_request(
                        "Invalid value specified for property 'web' of resource 'Application'."
                    )
                app.web = {**app.web, **value}
            elif key == "publicClient":
                uris = value.get("redirectUris", []) if isinstance(value, dict) else None
                if not isinstance(uris, list):
                    raise bad_request(
                        "Invalid value specified for property 'publicClient' of resource 'Application'."
                    )
                app.public_client_redirect_uris = [str(u) for u in uris]
            elif key == "isFallbackPublicClient":
                app.is_fallback_public_client = bool(value) if value is not None else None

    _WEB_KEYS = {
        "redirectUris",
        "homePageUrl",
        "logoutUrl",
        "implicitGrantSettings",
        "redirectUriSettings",
    }

    @classmethod
    def _valid_web(cls, web: dict[str, Any]) -> bool:
        uris = web.get("redirectUris", [])
        return (
            set(web) <= cls._WEB_KEYS
            and isinstance(uris, list)
            and all(isinstance(u, str) for u in uris)
            and all(
                web.get(k) is None or isinstance(web[k], str) for k in ("homePageUrl", "logoutUrl")
            )
        )

    @staticmethod
    def _parse_rra(value: object) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            raise bad_request(
                "Invalid value specified for property 'requiredResourceAccess' of resource 'Application'."
            )
        result: list[dict[str, Any]] = []
        total = 0
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("resourceAccess"), list):
                raise bad_request(
                    "Invalid value specified for property 'requiredResourceAccess' of resource 'Application'."
                )
            resource_app_id = _check_guid(item.get("resourceAppId"), "resourceAppId")
            access = []
            for ra in item["resourceAccess"]:
                if not isinstance(ra, dict) or ra.get("type") not in ("Scope", "Role"):
                    raise bad_request(
                        "Invalid value specified for property 'resourceAccess' of resource 'RequiredResourceAccess'."
                    )
                access.append({"id": _check_guid(ra.get("id"), "id"), "type": ra["type"]})
            total += len(access)
            result.append({"resourceAppId": resource_app_id, "resourceAccess": access})
        if len(result) > 50 or total > 400:
            raise bad_request("The number of required resource access entries exceeds the limit.")
        return result

    def create_application(self, caller: Caller, body: dict[str, Any]) -> Application:
        """POST /applications."""
        if not caller.has_any(
            "Application.ReadWrite.All", "Application.ReadWrite.OwnedBy", "Directory.ReadWrite.All"
        ):
            raise denied()
        if not isinstance(body.get("displayName"), str) or not body["displayName"].strip():
            raise bad_request("Property 'displayName' is required.")
        with self.lock:
            now = self._now()
            app = Application(
                id=self.ids.guid(),
                app_id=self.ids.guid(),
                display_name=body["displayName"],
                created=now,
                created_by_app_id=caller.app_id,
                replica=self.knobs.replication.replica(now),
            )
            self._apply_app_fields(app, body)
            self.state.applications[app.id] = app
            return app

    def update_application(self, caller: Caller, app: Application, body: dict[str, Any]) -> None:
        """PATCH /applications/{id}: properties sent replace their values (collections whole)."""
        self._check_app_write(caller, app)
        with self.lock:
            self._apply_app_fields(copy.deepcopy(app), body)  # all or nothing: validate first
            self._apply_app_fields(app, body)

    def delete_application(self, caller: Caller, app: Application) -> None:
        """DELETE /applications/{id}; the app's service principal and its grants go with it."""
        self._check_app_write(caller, app)
        with self.lock:
            self.state.applications.pop(app.id, None)
            sp = self.sp_by_app_id(app.app_id)
            if sp is not None:
                self._delete_sp(sp)

    def add_password(
        self, caller: Caller, app: Application, body: dict[str, Any]
    ) -> tuple[PasswordCredential, str]:
        """POST addPassword: a new secret, returned once."""
        self._check_app_write(caller, app)
        cred_in = body.get("passwordCredential", {})
        if cred_in is None:
            cred_in = {}
        if not isinstance(cred_in, dict):
            raise bad_request("Invalid value specified for property 'passwordCredential'.")
        now = self._now()
        start = _parse_time(cred_in.get("startDateTime"), "startDateTime") or now
        end = (
            _parse_time(cred_in.get("endDateTime"), "endDateTime")
            or start + DEFAULT_SECRET_LIFETIME
        )
        if end <= start:
            raise bad_request("Key credential end date is invalid.", code="Request_BadRequest")
        cap = self.knobs.secret_max_lifetime_days
        if cap is not None and end - start > timedelta(days=cap):
            raise EmulatorError(
                400,
                "CredentialInvalidLifetimeAsPerAppPolicy",
                "Credential lifetime exceeds the max value allowed as per assigned policy "
                f"'00000000-0000-0000-0000-000000000000'. Maximum allowed lifetime: {cap:g} days.",
            )
        display = cred_in.get("displayName")
        if display is not None and not isinstance(display, str):
            raise bad_request("Invalid value specified for property 'displayName'.")
        with self.lock:
            text = self._new_secret_text()
            cred = PasswordCredential(
                key_id=self.ids.guid(),
                display_name=display,
                start=start,
                end=end,
                hint=text[:3],
                secret_sha256=_hash(text),
                active=self.knobs.secret.replica(now),
            )
            app.password_credentials.append(cred)
        return cred, text

    def remove_password(self, caller: Caller, app: Application, body: dict[str, Any]) -> None:
        """POST removePassword."""
        self._check_app_write(caller, app)
        key_id = _check_guid(body.get("keyId"), "keyId")
        with self.lock:
            for cred in app.password_credentials:
                if cred.key_id == key_id:
                    app.password_credentials.remove(cred)
                    return
        raise bad_request(f"No password credential found with keyId '{key_id}'.")

    # --- service principals ---------------------------------------------------------------

    def create_service_principal(self, caller: Caller, body: dict[str, Any]) -> ServicePrincipal:
        """POST /servicePrincipals {appId}."""
        if not caller.has_any(
            "Application.ReadWrite.All", "Application.ReadWrite.OwnedBy", "Directory.ReadWrite.All"
        ):
            raise denied()
        extra = set(body) - {
            "appId",
            "tags",
            "accountEnabled",
            "displayName",
            "appRoleAssignmentRequired",
        }
        extra = {k for k in extra if not k.startswith("@odata.")}
        if extra:
            raise bad_request(f"Invalid property '{sorted(extra)[0]}'.")
        app_id = _check_guid(body.get("appId"), "appId")
        with self.lock:
            existing = self.sp_by_app_id(app_id)
            if existing is not None:
                raise EmulatorError(
                    409,
                    "Request_MultipleObjectsWithSameKeyValue",
                    "The service principal cannot be created, updated, or restored because the "
                    f"service principal name {app_id} is already in use.",
                    details=[
                        {
                            "code": "ObjectConflict",
                            "target": "servicePrincipalNames",
                            "message": f"The service principal name {app_id} is already in use.",
                        }
                    ],
                )
            app = self.app_by_app_id(app_id)
            if app is None:
                raise EmulatorError(
                    400,
                    "Request_BadRequest",
                    f"The appId '{app_id}' of the service principal does not reference a valid "
                    "application object.",
                    details=[
                        {
                            "code": "NoBackingApplicationObject",
                            "target": "appId",
                            "message": f"The appId '{app_id}' of the service principal does not "
                            "reference a valid application object.",
                        }
                    ],
                )
            if app.created_by_app_id != caller.app_id and not caller.has_any(
                "Application.ReadWrite.All", "Directory.ReadWrite.All"
            ):
                raise denied()
            now = self._now()
            tags = body.get("tags", [])
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise bad_request("Invalid value specified for property 'tags'.")
            sp = ServicePrincipal(
                id=self.ids.guid(),
                app_id=app.app_id,
                display_name=app.display_name,
                created=now,
                app_owner_organization_id=self.state.tenant.id,
                service_principal_names=[app.app_id, *app.identifier_uris],
                tags=list(tags),
                replica=self.knobs.replication.replica(now),
            )
            self.state.service_principals[sp.id] = sp
            return sp

    def _delete_sp(self, sp: ServicePrincipal) -> None:
        self.state.service_principals.pop(sp.id, None)
        for a in list(self.state.app_role_assignments.values()):
            if sp.id in (a.principal_id, a.resource_id):
                del self.state.app_role_assignments[a.id]

    def delete_service_principal(self, caller: Caller, sp: ServicePrincipal) -> None:
        """DELETE /servicePrincipals/{id}."""
        if not caller.has_any("Application.ReadWrite.All", "Directory.ReadWrite.All"):
            raise denied()
        with self.lock:
            self._delete_sp(sp)

    # --- app role assignments (admin consent) ---------------------------------------------

    def assign_app_role(
        self,
        caller: Caller,
        body: dict[str, Any],
        *,
        path_sp: ServicePrincipal,
        resource_side: bool,
    ) -> AppRoleAssignment:
        """POST appRoleAssignedTo (resource side) or appRoleAssignments (principal side)."""
        if not caller.has_any(
            "AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All"
        ) or not caller.has_any(
            "Application.Read.All",
            "Application.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ):
            raise denied()
        principal_id = _check_guid(body.get("principalId"), "principalId")
        resource_id = _check_guid(body.get("resourceId"), "resourceId")
        app_role_id = _check_guid(body.get("appRoleId"), "appRoleId")
        if resource_side and resource_id != path_sp.id:
            raise bad_request("The resourceId must match the service principal in the request URL.")
        if not resource_side and principal_id != path_sp.id:
            raise bad_request(
                "The principalId must match the service principal in the request URL."
            )
        with self.lock:
            principal = self.get_service_principal(principal_id)
            resource = self.get_service_principal(resource_id)
            role = next((r for r in resource.app_roles if r["id"] == app_role_id), None)
            if role is None:
                raise bad_request("Permission being assigned was not found on application")
            for a in self.state.app_role_assignments.values():
                if (a.principal_id, a.resource_id, a.app_role_id) == (
                    principal.id,
                    resource.id,
                    app_role_id,
                ):
                    raise bad_request("Permission being assigned already exists on the object.")
            now = self._now()
            assignment = AppRoleAssignment(
                id=self.ids.opaque(),
                app_role_id=app_role_id,
                principal_id=principal.id,
                principal_display_name=principal.display_name,
                resource_id=resource.id,
                resource_display_name=resource.display_name,
                created=now,
                effective=self.knobs.consent.replica(now),
            )
            self.state.app_role_assignments[assignment.id] = assignment
            return assignment

    def assignments(
        self, *, principal_id: str | None = None, resource_id: str | None = None
    ) -> list[AppRoleAssignment]:
        """Assignments of a principal or to a resource."""
        return [
            a
            for a in self.state.app_role_assignments.values()
            if (principal_id is None or a.principal_id == principal_id)
            and (resource_id is None or a.resource_id == resource_id)
        ]

    def delete_assignment(self, caller: Caller, sp: ServicePrincipal, assignment_id: str) -> None:
        """DELETE .../appRoleAssignedTo/{id} or .../appRoleAssignments/{id}."""
        if not caller.has_any("AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All"):
            raise denied()
        with self.lock:
            a = self.state.app_role_assignments.get(assignment_id)
            if a is None or sp.id not in (a.principal_id, a.resource_id):
                raise not_found(assignment_id)
            del self.state.app_role_assignments[assignment_id]

    def token_roles(self, principal: ServicePrincipal, resource: ServicePrincipal) -> list[str]:
        """Role values for a new app-only token: consented and propagated assignments only."""
        values = []
        now = self._now()
        for a in self.assignments(principal_id=principal.id, resource_id=resource.id):
            if seen(a.effective, now):
                role = next((r for r in resource.app_roles if r["id"] == a.app_role_id), None)
                if role is not None:
                    values.append(str(role["value"]))
        return sorted(set(values))

    # --- groups ---------------------------------------------------------------------------

    def create_group(self, caller: Caller, body: dict[str, Any]) -> Group:
        """POST /groups."""
        if not caller.has_any("Group.ReadWrite.All", "Group.Create", "Directory.ReadWrite.All"):
            raise denied()
        for key in ("displayName", "mailNickname"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise bad_request(f"Property '{key}' is required.")
        for key in ("mailEnabled", "securityEnabled"):
            if not isinstance(body.get(key), bool):
                raise bad_request(f"Property '{key}' is required.")
        group_types = body.get("groupTypes", [])
        if not isinstance(group_types, list) or not all(isinstance(t, str) for t in group_types):
            raise bad_request(
                "Invalid value specified for property 'groupTypes' of resource 'Group'."
            )
        if body.get("description") is not None and not isinstance(body["description"], str):
            raise bad_request(
                "Invalid value specified for property 'description' of resource 'Group'."
            )
        if body["mailEnabled"] and "Unified" not in group_types:
            # Graph creates only Microsoft 365 groups or plain security groups; mail-enabled
            # security groups are made in Exchange.
            raise bad_request("Mail-enabled security groups can only be created in Exchange.")
        with self.lock:
            group = Group(
                id=self.ids.guid(),
                display_name=body["displayName"],
                mail_nickname=body["mailNickname"],
                created=self._now(),
                mail_enabled=body["mailEnabled"],
                security_enabled=body["securityEnabled"],
                description=body.get("description"),
                group_types=list(group_types),
                mail=f"{body['mailNickname']}@{self.state.tenant.initial_domain}"
                if body["mailEnabled"]
                else None,
            )
            self.state.groups[group.id] = group
            return group

    def get_group(self, ident: str) -> Group:
        """Group by object id."""
        group = self.state.groups.get(ident.lower())
        if group is None:
            raise not_found(ident)
        return group


def _parse_time(value: object, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"Invalid value specified for property '{what}'.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"Invalid value specified for property '{what}'.") from None
    if parsed.tzinfo is None:
        raise bad_request(f"Invalid value specified for property '{what}'.")
    return parsed
