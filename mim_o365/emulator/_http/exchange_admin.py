"""Exchange Online admin API: ``POST /adminapi/beta/{tenant}/InvokeCommand`` (protocol.md §5).

One endpoint runs a cmdlet named in the body. The wire details copy what public clients and live
captures show: the success envelope with ``@adminapi.warnings`` and ``@odata.nextLink`` paging, the
400 envelope whose real text sits in ``innererror.internalexception`` and ``details[0]``, and the
403 whose body is a run of NUL bytes rather than JSON.

Choices where the reference is uncertain [U]: 401 carries a small ``{"error": {code, message}}``
body; an unknown tenant segment is a 404; a parameter that does not convert is answered like the
live capture (no ``details``, warnings inside ``error``); a missing mandatory parameter is an
AmbiguousParameterSetException; groups made here have no ManagedBy, so member changes and removal
need ``-BypassSecurityGroupManagerCheck``; without ``Prefer: odata.maxpagesize`` pages hold 1000.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from mim_o365._wellknown import EXCHANGE_APP_ID, EXCHANGE_MANAGE_AS_APP
from mim_o365.emulator._errors import EmulatorError
from mim_o365.emulator._exchange import INVALID, Recipient, cmdlet_error
from mim_o365.emulator._http._common import JSON, base_url, iso, json_response, read_json
from mim_o365.emulator._tokens import InvalidToken

if TYPE_CHECKING:
    from mim_o365.emulator._emulator import Emulator
    from mim_o365.emulator._models import AccessPolicy, MailGroup, RoleAssignment, User

ODATA_JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
ODATA_SERVICE = "Microsoft.Exchange.Admin.OData.Core.ODataServiceException"
# Both observed live (protocol.md §5.3): an unknown parameter, and a value that does not convert.
PARAMETER_SET = "Microsoft.Exchange.AdminApi.CommandInvocation.AmbiguousParameterSetException"
TRANSFORMATION = "Microsoft.Exchange.AdminApi.CommandInvocation.ParameterTransformationException"
COMMAND_NOT_FOUND = "System.Management.Automation.CommandNotFoundException"
GROUP_MANAGER = "Microsoft.Exchange.Configuration.Tasks.OperationRequiresGroupManagerException"
NOT_SUPPORTED = "System.NotSupportedException"

_ROUTE = re.compile(r"^/adminapi/beta/(?P<tenant>[^/]+)/InvokeCommand$", re.IGNORECASE)
_PAGE_SIZE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
DEFAULT_PAGE_SIZE = 1000
RATE_LIMIT = 30000
# The 403 for a caller without Exchange.ManageAsApp or an admin role: not JSON, NUL bytes (observed).
FORBIDDEN_BODY = b"\x00" * 4096

# What each Entra directory role may do here: read (Get-/Test-), recipients (groups and their
# members) and org (organization config, access policies, RBAC for Applications).
ROLE_RIGHTS: Mapping[str, frozenset[str]] = {
    "global administrator": frozenset({"read", "recipients", "org"}),
    "exchange administrator": frozenset({"read", "recipients", "org"}),
    "exchange recipient administrator": frozenset({"read", "recipients"}),
    "global reader": frozenset({"read"}),
}

_GUID_PROPERTIES = frozenset({"Guid", "MailboxGuid"})
_DATE_PROPERTIES = frozenset({"WhenCreated", "WhenCreatedUTC"})


@dataclass(frozen=True)
class Param:
    """A cmdlet parameter: how its JSON value binds, and whether it must be present."""

    kind: str = "string"  # string | string? | strings | switch | bool? | app-ids | scalar | enum
    mandatory: bool = False
    choices: tuple[str, ...] = ()
    type_name: str = "System.String"


@dataclass(frozen=True)
class Cmdlet:
    """A cmdlet the emulator knows: the right it needs, its parameters and its aliases."""

    name: str
    right: str
    params: Mapping[str, Param]
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        """Whether the cmdlet changes state (and so takes -Confirm)."""
        return not self.name.startswith(("Get-", "Test-"))


_TYPE_NAMES = {
    "switch": "System.Management.Automation.SwitchParameter",
    "bool?": "System.Nullable`1[System.Boolean]",
    "strings": "System.String[]",
}
_ENUMS = {
    "Type": (
        ("Distribution", "Security"),
        "Microsoft.Exchange.Management.RecipientTasks.GroupType",
    ),
    "AccessRight": (
        ("RestrictAccess", "DenyAccess"),
        "Microsoft.Exchange.Data.ApplicationAccessPolicy.AccessRight",
    ),
}

# Cmdlet -> (right needed, parameters). A parameter is ``Name``, ``Name!`` when mandatory, and
# ``:kind`` when it is not a plain string (kinds as in :class:`Param`).
_SPECS: Mapping[str, tuple[str, str]] = {
    "Get-Mailbox": ("read", "Identity ResultSize:scalar"),
    "Get-Recipient": ("read", "Identity ResultSize:scalar RecipientTypeDetails:strings"),
    "New-DistributionGroup": (
        "recipients",
        "Name! Type:enum Alias PrimarySmtpAddress Members:strings Notes",
    ),
    "Get-DistributionGroup": ("read", "Identity ResultSize:scalar"),
    "Remove-DistributionGroup": ("recipients", "Identity! BypassSecurityGroupManagerCheck:switch"),
    "Add-DistributionGroupMember": (
        "recipients",
        "Identity! Member! BypassSecurityGroupManagerCheck:switch",
    ),
    "Remove-DistributionGroupMember": (
        "recipients",
        "Identity! Member! BypassSecurityGroupManagerCheck:switch",
    ),
    "Get-DistributionGroupMember": ("read", "Identity! ResultSize:scalar"),
    "New-ApplicationAccessPolicy": (
        "org",
        "AppId!:strings PolicyScopeGroupId! AccessRight!:enum Description",
    ),
    "Get-ApplicationAccessPolicy": ("read", "Identity"),
    "Set-ApplicationAccessPolicy": ("org", "Identity! Description:string?"),
    "Remove-ApplicationAccessPolicy": ("org", "Identity!"),
    "Test-ApplicationAccessPolicy": ("read", "Identity! AppId!"),
    "Get-OrganizationConfig": ("read", "RetrieveEwsOperationAccessPolicy:switch"),
    "Set-OrganizationConfig": ("org", "EwsEnabled:bool? EwsAllowedAppIDs:app-ids"),
    "New-ServicePrincipal": ("org", "AppId! ObjectId! DisplayName"),
    "Get-ServicePrincipal": ("read", "Identity"),
    "Remove-ServicePrincipal": ("org", "Identity!"),
    "New-ManagementScope": ("org", "Name! RecipientRestrictionFilter!"),
    "Get-ManagementScope": ("read", "Identity"),
    "Remove-ManagementScope": ("org", "Identity!"),
    "New-ManagementRoleAssignment": (
        "org",
        "App! Role! CustomResourceScope RecipientGroupScope Name",
    ),
    "Get-ManagementRoleAssignment": ("read", "Identity App RoleAssignee Role"),
    "Remove-ManagementRoleAssignment": ("org", "Identity!"),
    "Test-ServicePrincipalAuthorization": ("read", "Identity! Resource"),
}
_ALIASES: Mapping[str, Mapping[str, str]] = {"New-ServicePrincipal": {"serviceid": "objectid"}}


def _param(token: str) -> tuple[str, Param]:
    name, _, kind = token.partition(":")
    mandatory = name.endswith("!")
    name = name.rstrip("!")
    choices, type_name = _ENUMS.get(name, ((), _TYPE_NAMES.get(kind, "System.String")))
    return name, Param(kind or "string", mandatory, choices if kind == "enum" else (), type_name)


CMDLETS: tuple[Cmdlet, ...] = tuple(
    Cmdlet(name, right, dict(_param(t) for t in spec.split()), _ALIASES.get(name, {}))
    for name, (right, spec) in _SPECS.items()
)
_BY_NAME: Mapping[str, Cmdlet] = {c.name.lower(): c for c in CMDLETS}

# PowerShell common parameters the admin API accepts on every cmdlet (ignored here).
_COMMON = {"erroraction": "string", "warningaction": "string", "verbose": "switch"}


class _Stop(Exception):  # noqa: N818 - control flow, carries the answer
    """Ends a request early with ``response``."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _BindingError(EmulatorError):
    """A parameter value that does not convert: observed without ``details`` (protocol.md §5.3)."""


def _transformation(name: str, value: object, type_name: str, detail: str = "") -> _BindingError:
    shown = value if isinstance(value, str) else json.dumps(value)
    text = (
        f"Cannot process argument transformation on parameter '{name}'. Cannot convert value "
        f'"{shown}" to type "{type_name}".'
    )
    return _BindingError(400, TRANSFORMATION, f'{text} Error: "{detail}"' if detail else text)


def _scalar(value: object) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


class ExchangeAdmin:
    """The admin API surface of an :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator
        self._calls = 0

    # --- entry --------------------------------------------------------------------------------

    def handle(self, request: httpx.Request, path: str) -> httpx.Response:
        """Serve ``path`` (starting with ``/adminapi/``)."""
        request_id = self.em.ids.guid()
        self._calls += 1
        now = self.em.clock.now()
        headers = {
            "request-id": request_id,
            "client-request-id": request.headers.get("client-request-id", request_id),
            "Rate-Limit-Limit": str(RATE_LIMIT),
            "Rate-Limit-Remaining": str(max(0, RATE_LIMIT - self._calls)),
            "Rate-Limit-Reset": iso(now + timedelta(hours=1)),
        }
        try:
            response = self._serve(request, path)
        except _Stop as stop:
            response = stop.response
        response.headers.update(headers)
        return response

    def _serve(self, request: httpx.Request, path: str) -> httpx.Response:
        m = _ROUTE.match(path)
        if m is None:
            raise _Stop(_plain_error(404, "NotFound", f"No admin API operation serves '{path}'."))
        if request.method != "POST":
            raise _Stop(
                _plain_error(405, "MethodNotAllowed", "InvokeCommand accepts only POST requests.")
            )
        tenant = self.em.directory.state.tenant
        if m["tenant"].lower() not in (tenant.id.lower(), tenant.initial_domain.lower()):
            raise _Stop(
                _plain_error(404, "NotFound", f"The tenant '{m['tenant']}' couldn't be found.")
            )
        rights = self._authorize(request)
        cmdlet, params = self._command(request)
        if cmdlet.right not in rights:
            raise _Stop(_forbidden())
        try:
            args = self._bind(cmdlet, params)
            handler: Callable[[dict[str, Any]], tuple[list[JSON], list[str]]] = getattr(
                self, "_" + cmdlet.name.lower().replace("-", "_")
            )
            rows, warnings = handler(args)
        except EmulatorError as err:
            return _cmdlet_error(err)
        return self._success(request, cmdlet, rows, warnings)

    # --- authentication and authorization -----------------------------------------------------

    def _authorize(self, request: httpx.Request) -> frozenset[str]:
        """The caller's rights; 401 for a bad token, 403 (NUL bytes) for one that may not manage."""
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise _Stop(self._unauthorized(request, "The request has no bearer token."))
        exchange = self.em.directory.sp_by_app_id(EXCHANGE_APP_ID)
        audiences = tuple(exchange.service_principal_names) if exchange else (EXCHANGE_APP_ID,)
        try:
            claims = self.em.tokens.validate(
                auth[7:].strip(), audiences=audiences, now=self.em.clock.now()
            )
        except InvalidToken as exc:
            raise _Stop(self._unauthorized(request, exc.reason)) from None
        state = self.em.directory.state
        if claims.get("tid") != state.tenant.id:
            raise _Stop(self._unauthorized(request, "The token was issued for another tenant."))
        oid = str(claims.get("oid", ""))
        roles: list[str] = []
        if claims.get("idtyp") == "user":
            user = state.users.get(oid)
            roles = user.directory_roles if user else []
        elif EXCHANGE_MANAGE_AS_APP in (claims.get("roles") or []):
            sp = state.service_principals.get(oid)
            roles = sp.directory_roles if sp else []
        rights: frozenset[str] = frozenset()
        for role in roles:
            rights |= ROLE_RIGHTS.get(role.lower(), frozenset())
        if not rights:
            raise _Stop(_forbidden())
        return rights

    def _unauthorized(self, request: httpx.Request, reason: str) -> httpx.Response:
        challenge = (
            f'Bearer client_id="{EXCHANGE_APP_ID}", '
            'token_types="app_asserted_user_v1 service_asserted_app_v1", '
            f'authorization_uri="{base_url(request)}/common/oauth2/authorize", '
            'error="invalid_token"'
        )
        return json_response(
            401,
            {"error": {"code": "Unauthorized", "message": reason}},
            {"WWW-Authenticate": challenge},
        )

    # --- request body and parameter binding ---------------------------------------------------

    def _command(self, request: httpx.Request) -> tuple[Cmdlet, dict[str, Any]]:
        body, problem = read_json(request)
        if problem is not None:
            raise _Stop(_plain_error(400, "BadRequest", problem))
        cmd = _get_ci(body, "CmdletInput") if isinstance(body, dict) else None
        if not isinstance(cmd, dict):
            raise _Stop(
                _plain_error(400, "BadRequest", "The request body must hold a CmdletInput object.")
            )
        name = _get_ci(cmd, "CmdletName")
        params = _get_ci(cmd, "Parameters")
        if not isinstance(name, str) or not name.strip():
            raise _Stop(_plain_error(400, "BadRequest", "CmdletInput.CmdletName must be a string."))
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise _Stop(
                _plain_error(400, "BadRequest", "CmdletInput.Parameters must be a JSON object.")
            )
        cmdlet = _BY_NAME.get(name.strip().lower())
        if cmdlet is None:
            raise _Stop(
                _cmdlet_error(
                    cmdlet_error(
                        COMMAND_NOT_FOUND,
                        f"The term '{name}' is not recognized as the name of a cmdlet, function, "
                        "script file, or operable program. Check the spelling of the name, or if a "
                        "path was included, verify that the path is correct and try again.",
                    )
                )
            )
        return cmdlet, params

    def _bind(self, cmdlet: Cmdlet, params: dict[str, Any]) -> dict[str, Any]:
        canonical = {k.lower(): k for k in cmdlet.params}
        common = dict(_COMMON)
        if cmdlet.writes:
            common["confirm"] = "switch"
        named: dict[str, tuple[str, Any]] = {}
        unknown: list[str] = []
        for key, value in params.items():
            if "@" in key:  # an OData annotation such as "Members@odata.type"
                continue
            lower = cmdlet.aliases.get(key.lower(), key.lower())
            if lower in common:
                _convert(key, Param(common[lower]), value)
                continue
            if lower not in canonical:
                unknown.append(key)
                continue
            pname = canonical[lower]
            if pname in named:
                raise cmdlet_error(
                    PARAMETER_SET,
                    "Parameter set cannot be resolved using the specified named parameters. "
                    f"Parameter '{pname}' is specified more than once.",
                )
            named[pname] = (key, value)
        if unknown:
            raise cmdlet_error(
                PARAMETER_SET,
                "Parameter set cannot be resolved using the specified named parameters. Invalid "
                f"cmdlet parameters specified. {', '.join(unknown)}",
            )
        missing = [n for n, p in cmdlet.params.items() if p.mandatory and n not in named]
        if missing:
            raise cmdlet_error(
                PARAMETER_SET,
                "Parameter set cannot be resolved using the specified named parameters. Missing "
                f"mandatory parameters: {', '.join(missing)}",
            )
        return {n: _convert(n, cmdlet.params[n], v) for n, (_, v) in named.items()}

    # --- responses ----------------------------------------------------------------------------

    def _success(
        self, request: httpx.Request, cmdlet: Cmdlet, rows: list[JSON], warnings: list[str]
    ) -> httpx.Response:
        params = request.url.params
        offset = 0
        if "$skiptoken" in params:
            offset = _decode_skiptoken(params["$skiptoken"], cmdlet.name)
        if "$select" in params:
            wanted = {s.strip().lower() for s in params["$select"].split(",") if s.strip()}
            rows = [{k: v for k, v in r.items() if k.lower() in wanted} for r in rows]
        size, asked = DEFAULT_PAGE_SIZE, False
        for header in ("prefer", "x-prefer"):
            found = _PAGE_SIZE.search(request.headers.get(header, ""))
            if found and int(found.group(1)) > 0:
                size, asked = int(found.group(1)), True
        body: JSON = {
            "@odata.context": f"{base_url(request)}/adminapi/beta/"
            f"{self.em.directory.state.tenant.id}/$metadata#Collection(Exchange.GenericHashTable)",
            "adminapi.warnings@odata.type": "#Collection(String)",
            "@adminapi.warnings": warnings,
            "value": [_annotate(r) for r in rows[offset : offset + size]],
        }
        if offset + size < len(rows):
            query = {k: v for k, v in params.items() if k != "$skiptoken"}
            query["$skiptoken"] = _encode_skiptoken(offset + size, cmdlet.name)
            body["@odata.nextLink"] = (
                f"{base_url(request)}{request.url.path}?{urlencode(query, safe='$,')}"
            )
        headers = {"Preference-Applied": f"odata.maxpagesize={size}"} if asked else None
        return json_response(200, body, headers, content_type=ODATA_JSON)

    # --- output shapes ------------------------------------------------------------------------

    def _guid(self, kind: str, key: str) -> str:
        """A stable Exchange guid for a directory object (Exchange keeps its own ids)."""
        return str(uuid.uuid5(uuid.UUID(self.em.tenant_id), f"{kind}:{key}"))

    def _sid(self, key: str) -> str:
        n = uuid.uuid5(uuid.UUID(self.em.tenant_id), f"sid:{key}").int
        parts = [str((n >> shift) & 0x3FFFFFFF) for shift in (0, 32, 64)]
        return f"S-1-5-21-{'-'.join(parts)}-{1000 + (n >> 96) % 100000}"

    def _dn(self, name: str) -> str:
        return (
            f"CN={name},OU={self.em.tenant_domain},OU=Microsoft Exchange Hosted Organizations,"
            "DC=EMUPR01A001,DC=PROD,DC=OUTLOOK,DC=COM"
        )

    def _mailbox_row(self, user: User) -> JSON:
        smtp = user.mail or user.user_principal_name
        alias = smtp.split("@")[0]
        return {
            "Identity": alias,
            "Name": alias,
            "DisplayName": user.display_name,
            "Alias": alias,
            "PrimarySmtpAddress": smtp,
            "UserPrincipalName": user.user_principal_name,
            "EmailAddresses": [f"SMTP:{smtp}"],
            "Guid": self._guid("mailbox", user.id),
            "ExternalDirectoryObjectId": user.id,
            "DistinguishedName": self._dn(alias),
            "RecipientType": "UserMailbox",
            "RecipientTypeDetails": "UserMailbox",
        }

    def _group_row(self, group: MailGroup) -> JSON:
        return {
            "Identity": group.name,
            "Name": group.name,
            "DisplayName": group.name,
            "Alias": group.alias,
            "PrimarySmtpAddress": group.primary_smtp,
            "EmailAddresses": [f"SMTP:{group.primary_smtp}"],
            "Guid": group.guid,
            "ExternalDirectoryObjectId": group.group_id,
            "DistinguishedName": self._dn(group.name),
            "RecipientType": "MailUniversalSecurityGroup",
            "RecipientTypeDetails": "MailUniversalSecurityGroup",
            "GroupType": "Universal, SecurityEnabled",
            "ManagedBy": [],
            "WhenCreated": iso(group.created),
            "WhenCreatedUTC": iso(group.created),
        }

    def _recipient_row(self, r: Recipient) -> JSON:
        if r.group is not None:
            return self._group_row(r.group)
        assert r.user is not None  # noqa: S101 - a recipient is a mailbox or a group
        return self._mailbox_row(r.user)

    def _policy_row(self, p: AccessPolicy) -> JSON:
        return {
            "Identity": p.identity,
            "AppId": p.app_id,
            "ScopeName": p.scope_name,
            "ScopeIdentity": p.scope_name,
            "ScopeIdentityRaw": p.identity.split(":", 1)[-1],
            "AccessRight": p.access_right,
            "Description": p.description,
            "IsValid": self.em.exchange.policy_is_valid(p),
            "WhenCreated": iso(p.created),
        }

    def _assignment_row(self, a: RoleAssignment) -> JSON:
        ex = self.em.exchange.ex
        pointer = next(
            (s for s in ex.service_principals.values() if s.object_id == a.app_object_id), None
        )
        # recipient_group_scope holds the group's directory object id
        group_name = next(
            (g.name for g in ex.groups.values() if g.group_id == a.recipient_group_scope),
            a.recipient_group_scope,
        )
        if a.custom_resource_scope:
            write_scope = "CustomRecipientScope"
        elif a.recipient_group_scope:
            write_scope = "Group"
        else:
            write_scope = "Organization"
        return {
            "Identity": a.name,
            "Name": a.name,
            "Guid": a.identity,
            "Role": a.role,
            "RoleAssignee": pointer.identity if pointer else a.app_object_id,
            "RoleAssigneeName": pointer.display_name if pointer else a.app_object_id,
            "RoleAssigneeType": "ServicePrincipal",
            "AssignmentMethod": "Direct",
            "CustomResourceScope": a.custom_resource_scope,
            "RecipientGroupScope": group_name,
            "RecipientWriteScope": write_scope,
            "Enabled": True,
            "WhenCreated": iso(a.created),
        }

    # --- recipients ---------------------------------------------------------------------------

    def _get_mailbox(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        ex = self.em.exchange
        if "Identity" in args:
            users = [ex.recipient(args["Identity"], kind="UserMailbox").user]
        else:
            users = [r.user for r in ex.recipients() if r.kind == "UserMailbox"]
        return [self._mailbox_row(u) for u in users if u is not None], []

    def _get_recipient(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        ex = self.em.exchange
        found = [ex.recipient(args["Identity"])] if "Identity" in args else ex.recipients()
        kinds = {k.lower() for k in args.get("RecipientTypeDetails", [])}
        return [self._recipient_row(r) for r in found if not kinds or r.kind.lower() in kinds], []

    def _new_distributiongroup(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        if args.get("Type", "Distribution") != "Security":
            raise cmdlet_error(
                NOT_SUPPORTED,
                "The emulator creates mail-enabled security groups only: pass -Type Security.",
            )
        group = self.em.exchange.new_security_group(
            args["Name"],
            alias=args.get("Alias"),
            smtp=args.get("PrimarySmtpAddress"),
            members=args.get("Members"),
            notes=args.get("Notes"),
        )
        return [self._group_row(group)], []

    def _get_distributiongroup(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        ex = self.em.exchange
        if "Identity" in args:
            groups = [ex.recipient(args["Identity"], kind="MailUniversalSecurityGroup").group]
        else:
            groups = list(ex.ex.groups.values())
        return [self._group_row(g) for g in groups if g is not None], []

    def _manager_check(self, args: dict[str, Any]) -> None:
        """Groups made here have no ManagedBy, so the caller is never a manager of the group."""
        self.em.exchange.recipient(args["Identity"], kind="MailUniversalSecurityGroup")
        if not args.get("BypassSecurityGroupManagerCheck"):
            raise cmdlet_error(
                GROUP_MANAGER,
                "You don't have sufficient permissions. This operation can only be performed by a "
                "manager of the group.",
            )

    def _remove_distributiongroup(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        self._manager_check(args)
        self.em.exchange.remove_group(args["Identity"])
        return [], []

    def _add_distributiongroupmember(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        self._manager_check(args)
        self.em.exchange.add_member(args["Identity"], args["Member"])
        return [], []

    def _remove_distributiongroupmember(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        self._manager_check(args)
        self.em.exchange.remove_member(args["Identity"], args["Member"])
        return [], []

    def _get_distributiongroupmember(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        ex = self.em.exchange
        group = ex.recipient(args["Identity"], kind="MailUniversalSecurityGroup").group
        assert group is not None  # noqa: S101 - the kind guarantees it
        return [self._mailbox_row(u) for u in ex.group_members(group) if u.has_mailbox], []

    # --- application access policies ----------------------------------------------------------

    def _new_applicationaccesspolicy(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        app_ids: list[str] = args["AppId"]
        for app_id in app_ids:
            if app_id != "*" and not _GUID.match(app_id):
                raise cmdlet_error(INVALID, f"The AppId '{app_id}' isn't a valid application ID.")
        policies = [
            self.em.exchange.new_policy(
                app_id, args["PolicyScopeGroupId"], args["AccessRight"], args.get("Description")
            )
            for app_id in app_ids
        ]
        return [self._policy_row(p) for p in policies], []

    def _get_applicationaccesspolicy(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        ex = self.em.exchange
        if "Identity" in args:
            return [self._policy_row(ex.policy(args["Identity"]))], []
        return [self._policy_row(p) for p in ex.ex.policies.values()], []

    def _set_applicationaccesspolicy(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        identity = args["Identity"]
        if "Description" not in args:
            self.em.exchange.policy(identity)
            return [], [_unchanged(identity)]
        changed = self.em.exchange.set_policy(identity, args["Description"])
        return [], [] if changed else [_unchanged(identity)]

    def _remove_applicationaccesspolicy(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        self.em.exchange.remove_policy(args["Identity"])
        return [], []

    def _test_applicationaccesspolicy(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        ex = self.em.exchange
        user = ex.recipient(args["Identity"], kind="UserMailbox").user
        assert user is not None  # noqa: S101 - the kind guarantees it
        # Test- reads what was written, not what EWS enforces yet (protocol.md §5.5).
        granted, _ = ex.policy_verdict(args["AppId"], user, effective=False)
        row = self._mailbox_row(user)
        return [
            {
                "AppId": args["AppId"],
                "Mailbox": row["Identity"],
                "MailboxId": row["Guid"],
                "MailboxSid": self._sid(user.id),
                "AccessCheckResult": "Granted" if granted else "Denied",
            }
        ], []

    # --- organization config ------------------------------------------------------------------

    def _get_organizationconfig(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        knobs = self.em.knobs
        org = self.em.exchange.ex.org
        tenant = self.em.directory.state.tenant
        row: JSON = {
            "Identity": tenant.initial_domain,
            "Name": tenant.initial_domain,
            "DisplayName": tenant.display_name,
            "Guid": self._guid("organization", tenant.id),
            "EwsEnabled": org.ews_enabled,
            "EwsApplicationAccessPolicy": None,
            "EwsAllowList": None,
            "EwsBlockList": None,
            "EwsAllowOutlook": None,
            "EwsAllowMacOutlook": None,
            "EwsAllowEntourage": None,
            "OAuth2ClientProfileEnabled": True,
            "IsDehydrated": False,
        }
        # PowerShell leaves EwsAllowedAppIDs out unless asked (documented for Get-OrganizationConfig).
        if args.get("RetrieveEwsOperationAccessPolicy") or not knobs.require_retrieve_switch:
            ids = org.ews_allowed_app_ids
            if knobs.ews_allowed_ids_as_array and ids is not None:
                row["EwsAllowedAppIDs"] = [a.strip() for a in ids.split(",") if a.strip()]
            else:
                row["EwsAllowedAppIDs"] = ids
        return [row], []

    def _set_organizationconfig(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        org = self.em.exchange.ex.org
        changes: dict[str, Any] = {}
        if "EwsEnabled" in args and args["EwsEnabled"] != org.ews_enabled:
            changes["EwsEnabled"] = args["EwsEnabled"]
        if "EwsAllowedAppIDs" in args and args["EwsAllowedAppIDs"] != org.ews_allowed_app_ids:
            changes["EwsAllowedAppIDs"] = args["EwsAllowedAppIDs"]
        if not changes:
            return [], [_unchanged(self.em.tenant_domain)]
        self.em.exchange.set_org(changes)
        return [], []

    # --- RBAC for Applications ----------------------------------------------------------------

    def _sp_row(self, identity: str) -> JSON:
        p = self.em.exchange.exo_service_principal(identity)
        return {
            "Identity": p.identity,
            "Name": p.identity,
            "DisplayName": p.display_name,
            "AppId": p.app_id,
            "ObjectId": p.object_id,
            "ServiceId": p.object_id,
        }

    def _new_serviceprincipal(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        p = self.em.exchange.new_exo_service_principal(
            args["AppId"], args["ObjectId"], args.get("DisplayName")
        )
        return [self._sp_row(p.identity)], []

    def _get_serviceprincipal(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        if "Identity" in args:
            return [self._sp_row(args["Identity"])], []
        return [self._sp_row(i) for i in self.em.exchange.ex.service_principals], []

    def _remove_serviceprincipal(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        self.em.exchange.remove_exo_service_principal(args["Identity"])
        return [], []

    def _scope_row(self, identity: str) -> JSON:
        s = self.em.exchange.scope(identity)
        return {
            "Identity": s.name,
            "Name": s.name,
            "Guid": s.identity,
            "RecipientRoot": None,
            "RecipientFilter": s.recipient_restriction_filter,
            "ScopeRestrictionType": "RecipientScope",
            "Exclusive": False,
        }

    def _new_managementscope(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        s = self.em.exchange.new_scope(args["Name"], args["RecipientRestrictionFilter"])
        return [self._scope_row(s.identity)], []

    def _get_managementscope(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        if "Identity" in args:
            return [self._scope_row(args["Identity"])], []
        return [self._scope_row(i) for i in self.em.exchange.ex.scopes], []

    def _remove_managementscope(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        self.em.exchange.remove_scope(args["Identity"])
        return [], []

    def _new_managementroleassignment(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        if "CustomResourceScope" in args and "RecipientGroupScope" in args:
            raise cmdlet_error(
                PARAMETER_SET,
                "Parameter set cannot be resolved using the specified named parameters. "
                "CustomResourceScope and RecipientGroupScope can't be used together.",
            )
        a = self.em.exchange.new_role_assignment(
            args["App"],
            args["Role"],
            custom_scope=args.get("CustomResourceScope"),
            group_scope=args.get("RecipientGroupScope"),
            name=args.get("Name"),
        )
        return [self._assignment_row(a)], []

    def _get_managementroleassignment(self, args: dict[str, Any]) -> tuple[list[JSON], list[str]]:
        ex = self.em.exchange
        found = (
            [ex.role_assignment(args["Identity"])]
            if "Identity" in args
            else list(ex.ex.role_assignments.values())
        )
        for key in ("App", "RoleAssignee"):
            if key in args:
                object_id = ex.exo_service_principal(args[key]).object_id
                found = [a for a in found if a.app_object_id == object_id]
        if "Role" in args:
            found = [a for a in found if a.role.lower() == args["Role"].lower()]
        return [self._assignment_row(a) for a in found], []

    def _remove_managementroleassignment(
        self, args: dict[str, Any]
    ) -> tuple[list[JSON], list[str]]:
        self.em.exchange.remove_role_assignment(args["Identity"])
        return [], []

    def _test_serviceprincipalauthorization(
        self, args: dict[str, Any]
    ) -> tuple[list[JSON], list[str]]:
        ex = self.em.exchange
        pointer = ex.exo_service_principal(args["Identity"])
        user = None
        if "Resource" in args:
            user = ex.recipient(args["Resource"], kind="UserMailbox").user
        rows = []
        for a in ex.ex.role_assignments.values():
            if a.app_object_id != pointer.object_id:
                continue
            row = self._assignment_row(a)
            if a.custom_resource_scope:
                allowed, scope_type = a.custom_resource_scope, "CustomRecipientScope"
            elif a.recipient_group_scope:
                allowed, scope_type = row["RecipientGroupScope"], "RecipientGroupScope"
            else:
                allowed, scope_type = "Organization", "Organization"
            in_scope = None
            if user is not None:
                in_scope = a in ex.rbac_grants(a.app_object_id, user, a.role, effective=False)
            rows.append(
                {
                    "RoleName": a.role,
                    "GrantedPermissions": a.role.removeprefix("Application "),
                    "AllowedResourceScope": allowed,
                    "ScopeType": scope_type,
                    "InScope": in_scope,
                }
            )
        return rows, []


# --- module helpers -------------------------------------------------------------------------------


def _get_ci(obj: dict[str, Any], key: str) -> Any:
    """``obj[key]`` with the key matched case-insensitively."""
    for k, v in obj.items():
        if k.lower() == key.lower():
            return v
    return None


def _convert(name: str, p: Param, value: Any) -> Any:
    """Bind one JSON value as PowerShell would bind it to a parameter of ``p.kind``."""
    if p.kind == "switch":
        if isinstance(value, bool):
            return value
        raise _transformation(name, value, p.type_name)
    if p.kind == "bool?":
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return value != 0
        raise _transformation(
            name, value, p.type_name, "Boolean parameters accept only Boolean values and numbers."
        )
    if p.kind == "scalar":
        if value is None or _scalar(value):
            return value
        raise _transformation(name, value, "System.String")
    if p.kind == "strings":
        items = value if isinstance(value, list) else [value]
        if not items or not all(_scalar(i) and str(i).strip() for i in items):
            raise _transformation(name, value, "System.String[]")
        return [str(i) for i in items]
    if p.kind == "app-ids":
        return _app_ids(name, value)
    if value is None and p.kind == "string?":
        return None
    if not _scalar(value) or not str(value).strip():
        if value is None or value == "":
            raise _BindingError(
                400,
                TRANSFORMATION,
                f"Cannot validate argument on parameter '{name}'. The argument is null or empty. "
                "Provide an argument that is not null or empty, and then try the command again.",
            )
        raise _transformation(name, value, p.type_name)
    text = str(value)
    if p.kind == "enum":
        for choice in p.choices:
            if choice.lower() == text.strip().lower():
                return choice
        raise _transformation(
            name,
            value,
            p.type_name,
            f"Unable to match the identifier name {text} to a valid enumerator name. Specify one "
            f"of the following enumerator names and try again: {', '.join(p.choices)}",
        )
    return text


def _app_ids(name: str, value: Any) -> str | None:
    """EwsAllowedAppIDs: a comma-separated string (a JSON array is joined); null or empty clears."""
    if value is None:
        return None
    if isinstance(value, list):
        if not all(isinstance(i, str) for i in value):
            raise _transformation(name, value, "System.String")
        value = ",".join(i.strip() for i in value)
    if not isinstance(value, str):
        raise _transformation(name, value, "System.String")
    ids = [a.strip() for a in value.split(",") if a.strip()]
    for app_id in ids:
        if not _GUID.match(app_id):
            raise cmdlet_error(
                INVALID, f"The value '{app_id}' in EwsAllowedAppIDs isn't a valid application ID."
            )
    return value if ids else None


def _unchanged(identity: str) -> str:
    return f"The command completed successfully but no settings of '{identity}' have been modified."


def _annotate(row: JSON) -> JSON:
    """Add the ``@odata.type`` / ``@data.type`` annotations the service puts before typed values."""
    out: JSON = {}
    for key, value in row.items():
        if key in _GUID_PROPERTIES and value is not None:
            out[f"{key}@data.type"] = "System.Guid"
            out[f"{key}@odata.type"] = "#Guid"
        elif key in _DATE_PROPERTIES and value is not None:
            out[f"{key}@data.type"] = "System.DateTime"
            out[f"{key}@odata.type"] = "#DateTimeOffset"
        elif isinstance(value, list):
            out[f"{key}@odata.type"] = "#Collection(String)"
        out[key] = value
    return out


def _encode_skiptoken(offset: int, cmdlet: str) -> str:
    raw = json.dumps({"o": offset, "c": cmdlet.lower()}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_skiptoken(token: str, cmdlet: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = data["o"]
        ok = isinstance(offset, int) and offset >= 0 and data["c"] == cmdlet.lower()
    except (binascii.Error, ValueError, TypeError, KeyError):
        ok, offset = False, 0
    if not ok:
        raise _Stop(
            _plain_error(
                400, "BadRequest", "The $skiptoken is invalid or belongs to another command."
            )
        )
    return int(offset)


def _plain_error(status: int, code: str, message: str) -> httpx.Response:
    """An error outside any cmdlet (routing, malformed body): a bare OData error."""
    return json_response(status, {"error": {"code": code, "message": message}})


def _forbidden() -> httpx.Response:
    return httpx.Response(403, content=FORBIDDEN_BODY)


def _cmdlet_error(err: EmulatorError) -> httpx.Response:
    """The 400 a failing cmdlet gets: the real text in details and innererror (protocol.md §5.3)."""
    error: JSON = {"code": "BadRequest", "message": "Invalid Operation"}
    if not isinstance(err, _BindingError):
        error["details"] = [
            {"code": "Client", "target": "", "message": f"|{err.code}|{err.message}"}
        ]
    error["innererror"] = {
        "message": "Invalid Operation",
        "type": ODATA_SERVICE,
        "stacktrace": "",
        "internalexception": {"message": err.message, "type": err.code, "stacktrace": ""},
    }
    if isinstance(err, _BindingError):
        # as captured live for a value that does not convert
        error["adminapi.warnings@odata.type"] = "#Collection(String)"
        error["@adminapi.warnings"] = []
    return json_response(400, {"error": error}, content_type=ODATA_JSON)


__all__ = ["ExchangeAdmin"]
