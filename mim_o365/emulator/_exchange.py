"""The Exchange Online backend: recipients, mail-enabled security groups, application access
policies, RBAC for Applications and the EWS organization settings, and the access decision EWS
makes for an app-only caller. No HTTP here.

Errors carry the .NET exception type as ``code``; the admin API renders them as Exchange does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mim_o365.emulator._errors import EmulatorError
from mim_o365.emulator._ids import IdSource
from mim_o365.emulator._knobs import Knobs, seen
from mim_o365.emulator._models import (
    AccessPolicy,
    DirectoryState,
    ExoServicePrincipal,
    Group,
    MailGroup,
    ManagementScope,
    OrgChange,
    RoleAssignment,
    User,
)

NOT_FOUND = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
AMBIGUOUS = "Microsoft.Exchange.Configuration.Tasks.ManagementObjectAmbiguousException"
ALREADY_MEMBER = "Microsoft.Exchange.Management.Tasks.MemberAlreadyExistsException"
NAME_IN_USE = "Microsoft.Exchange.Data.Directory.ADObjectAlreadyExistsException"
INVALID = "System.ArgumentException"
POLICY_LIMIT = 300
EWS_ROLE = "Application EWS.AccessAsApp"
APP_ROLES = (
    EWS_ROLE,
    "Application Mail.Read",
    "Application Mail.Send",
    "Application Mail.ReadWrite",
)


def cmdlet_error(code: str, message: str) -> EmulatorError:
    """A cmdlet failure (HTTP 400 in the admin API)."""
    return EmulatorError(400, code, message)


@dataclass(frozen=True)
class Recipient:
    """A resolved recipient: a mailbox user or a mail-enabled group."""

    kind: str  # "UserMailbox" | "MailUniversalSecurityGroup"
    id: str  # directory object id
    name: str
    smtp: str
    user: User | None = None
    group: MailGroup | None = None


@dataclass(frozen=True)
class EwsDecision:
    """What EWS does with an app-only request for a mailbox; ``layer`` names the first denial."""

    allowed: bool
    layer: str = ""
    detail: str = ""


class Exchange:
    """Exchange Online operations on a tenant's state."""

    def __init__(
        self, state: DirectoryState, knobs: Knobs, ids: IdSource, now: Callable[[], datetime]
    ) -> None:
        self.state = state
        self.ex = state.exchange
        self.knobs = knobs
        self.ids = ids
        self._now = now

    @property
    def domain(self) -> str:
        """The initial domain, for new groups' addresses."""
        return self.state.tenant.initial_domain

    # --- recipients -----------------------------------------------------------------------

    def recipients(self) -> list[Recipient]:
        """Every mailbox and mail-enabled group."""
        out = [
            Recipient("UserMailbox", u.id, u.display_name, u.mail or u.user_principal_name, user=u)
            for u in self.state.users.values()
            if u.has_mailbox
        ]
        out += [
            Recipient("MailUniversalSecurityGroup", g.group_id, g.name, g.primary_smtp, group=g)
            for g in self.ex.groups.values()
        ]
        return out

    def find(self, identity: str) -> list[Recipient]:
        """Recipients matching an identity (address, alias, name, display name, guid or object id)."""
        key = identity.strip().lower()
        if key.startswith("cn=") and "," in key:
            # a distinguished name: its first RDN names the recipient
            key = key.split(",", 1)[0]
        found = []
        for r in self.recipients():
            names = {r.id, r.name.lower(), r.smtp.lower(), r.smtp.split("@")[0].lower()}
            if r.user is not None:
                names |= {r.user.user_principal_name.lower(), f"cn={r.smtp.split('@')[0].lower()}"}
            if r.group is not None:
                names |= {r.group.guid, r.group.alias.lower(), f"cn={r.group.name.lower()}"}
            if key in names:
                found.append(r)
        return found

    def recipient(self, identity: str, *, kind: str | None = None) -> Recipient:
        """Exactly one recipient; Exchange's not-found / ambiguous errors otherwise."""
        found = [r for r in self.find(identity) if kind is None or r.kind == kind]
        if not found:
            raise cmdlet_error(
                NOT_FOUND,
                f"The operation couldn't be performed because object '{identity}' "
                f"couldn't be found on '{self._dc()}'.",
            )
        if len(found) > 1:
            raise cmdlet_error(
                AMBIGUOUS,
                f"The operation couldn't be performed because '{identity}' matches "
                "multiple entries.",
            )
        return found[0]

    def _dc(self) -> str:
        return "EMUPR01A001DC01.EMUPR01A001.PROD.OUTLOOK.COM"

    def has_mailbox(self, address: str) -> User | None:
        """The user whose mailbox answers to ``address``, if any."""
        key = address.lower()
        for u in self.state.users.values():
            if u.has_mailbox and key in {(u.mail or "").lower(), u.user_principal_name.lower()}:
                return u
        return None

    # --- groups ---------------------------------------------------------------------------

    def new_security_group(
        self,
        name: str,
        *,
        alias: str | None = None,
        smtp: str | None = None,
        members: list[str] | None = None,
        notes: str | None = None,
    ) -> MailGroup:
        """New-DistributionGroup -Type Security: a mail-enabled security group (also in Entra)."""
        if not name.strip():
            raise cmdlet_error(INVALID, "The Name parameter can't be empty.")
        alias = alias or re.sub(r"[^A-Za-z0-9._-]", "", name) or "group"
        smtp = smtp or f"{alias}@{self.domain}"
        if self.find(name) or self.find(alias) or self.find(smtp):
            raise cmdlet_error(
                NAME_IN_USE,
                f"The name '{name}' or address '{smtp}' is already being used. Please "
                "choose another name or address.",
            )
        member_ids = [self.recipient(m, kind="UserMailbox").id for m in members or []]
        now = self._now()
        group = Group(
            id=self.ids.guid(),
            display_name=name,
            mail_nickname=alias,
            created=now,
            mail_enabled=True,
            security_enabled=True,
            mail=smtp,
            description=notes,
            members=member_ids,
        )
        self.state.groups[group.id] = group
        mail_group = MailGroup(
            guid=self.ids.guid(),
            group_id=group.id,
            name=name,
            alias=alias,
            primary_smtp=smtp,
            created=now,
            notes=notes,
        )
        self.ex.groups[mail_group.guid] = mail_group
        return mail_group

    def group_members(self, group: MailGroup) -> list[User]:
        """Members (mailbox users) of a mail-enabled group."""
        g = self.state.groups.get(group.group_id)
        return [self.state.users[m] for m in (g.members if g else []) if m in self.state.users]

    def add_member(self, group_identity: str, member: str) -> None:
        """Add-DistributionGroupMember."""
        group = self.recipient(group_identity, kind="MailUniversalSecurityGroup").group
        user = self.recipient(member, kind="UserMailbox")
        assert group is not None  # noqa: S101 - kind guarantees it
        entra = self.state.groups[group.group_id]
        if user.id in entra.members:
            raise cmdlet_error(
                ALREADY_MEMBER,
                f'The recipient "{user.smtp}" is already a member of the group "{group.name}".',
            )
        entra.members.append(user.id)

    def remove_member(self, group_identity: str, member: str) -> None:
        """Remove-DistributionGroupMember."""
        group = self.recipient(group_identity, kind="MailUniversalSecurityGroup").group
        user = self.recipient(member, kind="UserMailbox")
        assert group is not None  # noqa: S101
        entra = self.state.groups[group.group_id]
        if user.id not in entra.members:
            raise cmdlet_error(
                "Microsoft.Exchange.Management.Tasks.MemberNotFoundException",
                f'The recipient "{user.smtp}" isn\'t a member of the group "{group.name}".',
            )
        entra.members.remove(user.id)

    def remove_group(self, group_identity: str) -> None:
        """Remove-DistributionGroup."""
        group = self.recipient(group_identity, kind="MailUniversalSecurityGroup").group
        assert group is not None  # noqa: S101
        del self.ex.groups[group.guid]
        self.state.groups.pop(group.group_id, None)

    # --- application access policies ------------------------------------------------------

    def new_policy(
        self, app_id: str, scope_identity: str, access_right: str, description: str | None
    ) -> AccessPolicy:
        """New-ApplicationAccessPolicy."""
        if access_right not in ("RestrictAccess", "DenyAccess"):
            raise cmdlet_error(
                INVALID,
                f"Cannot process argument transformation on parameter 'AccessRight'. "
                f"Cannot convert value \"{access_right}\" to type 'ApplicationAccessRight'.",
            )
        scope = self.recipient(scope_identity)
        if len(self.ex.policies) >= POLICY_LIMIT:
            raise cmdlet_error(INVALID, "The total size of App Access Policies exceeded the limit.")
        for p in self.ex.policies.values():
            if p.app_id == app_id.lower() and p.scope_id == scope.id:
                raise cmdlet_error(
                    NAME_IN_USE,
                    f"An application access policy for app '{app_id}' and scope "
                    f"'{scope.name}' already exists.",
                )
        sid = (
            "S-1-5-21-" + "-".join(self.ids.digits(9) for _ in range(3)) + "-" + self.ids.digits(7)
        )
        guid = scope.group.guid if scope.group else scope.id
        policy = AccessPolicy(
            identity=f"{self.state.tenant.id}\\{app_id.lower()}:{sid};{guid}",
            app_id=app_id.lower(),
            scope_id=scope.id,
            scope_name=scope.name,
            scope_kind=scope.kind,
            access_right=access_right,
            description=description,
            created=self._now(),
            effective=self.knobs.policy.replica(self._now()),
        )
        self.ex.policies[policy.identity] = policy
        return policy

    def policy(self, identity: str) -> AccessPolicy:
        """One policy by identity."""
        policy = self.ex.policies.get(identity)
        if policy is None:
            raise cmdlet_error(
                NOT_FOUND,
                f"The operation couldn't be performed because object '{identity}' "
                f"couldn't be found on '{self._dc()}'.",
            )
        return policy

    def set_policy(self, identity: str, description: str | None) -> bool:
        """Set-ApplicationAccessPolicy -Description; False when nothing changed."""
        policy = self.policy(identity)
        if policy.description == description:
            return False
        policy.description = description
        return True

    def remove_policy(self, identity: str) -> None:
        """Remove-ApplicationAccessPolicy."""
        del self.ex.policies[self.policy(identity).identity]

    def policy_is_valid(self, policy: AccessPolicy) -> bool:
        """Whether the policy's scope (mailbox or group) still exists."""
        if policy.scope_kind == "UserMailbox":
            user = self.state.users.get(policy.scope_id)
            return user is not None and user.has_mailbox
        return policy.scope_id in self.state.groups

    def _in_scope(self, policy: AccessPolicy, user: User) -> bool:
        if policy.scope_kind == "UserMailbox":
            return policy.scope_id == user.id
        group = self.state.groups.get(policy.scope_id)
        return group is not None and user.id in group.members

    def policy_verdict(self, app_id: str, user: User, *, effective: bool) -> tuple[bool, str]:
        """Application access policy evaluation: DenyAccess over RestrictAccess."""
        now = self._now()
        mine = [
            p
            for p in self.ex.policies.values()
            if p.app_id in (app_id.lower(), "*") and (not effective or seen(p.effective, now))
        ]
        for p in mine:
            if p.access_right == "DenyAccess" and self._in_scope(p, user):
                return False, f"denied by policy {p.identity} (DenyAccess)"
        restrict = [p for p in mine if p.access_right == "RestrictAccess"]
        if restrict and not any(self._in_scope(p, user) for p in restrict):
            return False, "outside the scope of every RestrictAccess policy for the app"
        return True, ""

    # --- organization config --------------------------------------------------------------

    def set_org(self, changes: dict[str, Any]) -> None:
        """Set-OrganizationConfig for EwsEnabled / EwsAllowedAppIDs; enforcement follows the policy delay."""
        now = self._now()
        org = self.ex.org
        for name, value in changes.items():
            if name == "EwsEnabled":
                org.ews_enabled = value
            else:
                org.ews_allowed_app_ids = value
            org.pending.append(OrgChange(name, value, self.knobs.policy.replica(now)))

    def effective_org(self) -> tuple[bool | None, list[str] | None]:
        """What EWS enforces now: (EwsEnabled, allowed app ids or None)."""
        org = self.ex.org
        now = self._now()
        while org.pending and seen(org.pending[0].replica, now):
            change = org.pending.pop(0)
            if change.name == "EwsEnabled":
                org.effective_ews_enabled = change.value
            else:
                org.effective_ews_allowed_app_ids = change.value
        allowed = org.effective_ews_allowed_app_ids
        ids = [a.strip().lower() for a in allowed.split(",") if a.strip()] if allowed else None
        return org.effective_ews_enabled, ids

    # --- RBAC for Applications ------------------------------------------------------------

    def new_exo_service_principal(
        self, app_id: str, object_id: str, display_name: str | None
    ) -> ExoServicePrincipal:
        """New-ServicePrincipal: must point at the Entra service principal of ``app_id``."""
        sp = self.state.service_principals.get(object_id.lower())
        if sp is None or sp.app_id != app_id.lower():
            raise cmdlet_error(
                INVALID,
                f"The service principal with ObjectId '{object_id}' and AppId '{app_id}' "
                "was not found in Microsoft Entra ID.",
            )
        for existing in self.ex.service_principals.values():
            if existing.object_id == sp.id:
                raise cmdlet_error(
                    NAME_IN_USE, f"A service principal with AppId '{app_id}' already exists."
                )
        pointer = ExoServicePrincipal(
            self.ids.guid(), sp.app_id, sp.id, display_name or sp.display_name
        )
        self.ex.service_principals[pointer.identity] = pointer
        return pointer

    def exo_service_principal(self, identity: str) -> ExoServicePrincipal:
        """A service principal pointer by identity, app id, object id or display name."""
        key = identity.lower()
        for p in self.ex.service_principals.values():
            if key in (p.identity, p.app_id, p.object_id, p.display_name.lower()):
                return p
        raise cmdlet_error(
            NOT_FOUND,
            f"The operation couldn't be performed because object '{identity}' couldn't be "
            f"found on '{self._dc()}'.",
        )

    def new_scope(self, name: str, recipient_filter: str) -> ManagementScope:
        """New-ManagementScope -RecipientRestrictionFilter."""
        self._parse_filter(recipient_filter)
        if any(s.name.lower() == name.lower() for s in self.ex.scopes.values()):
            raise cmdlet_error(NAME_IN_USE, f"The management scope '{name}' already exists.")
        scope = ManagementScope(self.ids.guid(), name, recipient_filter)
        self.ex.scopes[scope.identity] = scope
        return scope

    def scope(self, identity: str) -> ManagementScope:
        """A scope by name or identity."""
        for s in self.ex.scopes.values():
            if identity.lower() in (s.identity, s.name.lower()):
                return s
        raise cmdlet_error(
            NOT_FOUND,
            f"The operation couldn't be performed because object '{identity}' couldn't be "
            f"found on '{self._dc()}'.",
        )

    def remove_exo_service_principal(self, identity: str) -> None:
        """Remove-ServicePrincipal; its role assignments go with it (they would grant nothing)."""
        pointer = self.exo_service_principal(identity)
        for key, a in list(self.ex.role_assignments.items()):
            if a.app_object_id == pointer.object_id:
                del self.ex.role_assignments[key]
        del self.ex.service_principals[pointer.identity]

    def remove_scope(self, identity: str) -> None:
        """Remove-ManagementScope; refused while role assignments use the scope."""
        scope = self.scope(identity)
        users = sorted(
            a.name
            for a in self.ex.role_assignments.values()
            if (a.custom_resource_scope or "").lower() == scope.name.lower()
        )
        if users:
            raise cmdlet_error(
                INVALID,
                f"The management scope '{scope.name}' can't be removed because it's used by "
                f"the role assignments {', '.join(users)}.",
            )
        del self.ex.scopes[scope.identity]

    def role_assignment(self, identity: str) -> RoleAssignment:
        """A role assignment by identity (guid) or name."""
        key = identity.strip().lower()
        for a in self.ex.role_assignments.values():
            if key in (a.identity, a.name.lower()):
                return a
        raise cmdlet_error(
            NOT_FOUND,
            f"The operation couldn't be performed because object '{identity}' couldn't be "
            f"found on '{self._dc()}'.",
        )

    def remove_role_assignment(self, identity: str) -> None:
        """Remove-ManagementRoleAssignment."""
        del self.ex.role_assignments[self.role_assignment(identity).identity]

    @staticmethod
    def _parse_filter(text: str) -> tuple[str, str]:
        m = re.fullmatch(
            r"\s*(MemberOfGroup|PrimarySmtpAddress|Alias)\s+-eq\s+'([^']*)'\s*", text, re.I
        )
        if m is None:
            raise cmdlet_error(
                INVALID,
                f'The recipient filter "{text}" isn\'t supported by this emulator: use '
                "MemberOfGroup, PrimarySmtpAddress or Alias with -eq.",
            )
        return m.group(1).lower(), m.group(2)

    def new_role_assignment(
        self,
        app: str,
        role: str,
        *,
        custom_scope: str | None,
        group_scope: str | None,
        name: str | None,
    ) -> RoleAssignment:
        """New-ManagementRoleAssignment -App (application roles only)."""
        if role not in APP_ROLES:
            raise cmdlet_error(
                INVALID,
                f"The role '{role}' isn't an application role; -App accepts only "
                "application roles such as 'Application EWS.AccessAsApp'.",
            )
        pointer = self.exo_service_principal(app)
        if custom_scope and group_scope:
            raise cmdlet_error(
                INVALID,
                "Parameters CustomResourceScope and RecipientGroupScope can't be used together.",
            )
        scope_name = self.scope(custom_scope).name if custom_scope else None
        group_id = (
            self.recipient(group_scope, kind="MailUniversalSecurityGroup").id
            if group_scope
            else None
        )
        assignment = RoleAssignment(
            identity=self.ids.guid(),
            name=name or f"{role}-{pointer.display_name}",
            role=role,
            app_object_id=pointer.object_id,
            custom_resource_scope=scope_name,
            recipient_group_scope=group_id,
            created=self._now(),
            effective=self.knobs.policy.replica(self._now()),
        )
        self.ex.role_assignments[assignment.identity] = assignment
        return assignment

    def _assignment_covers(self, a: RoleAssignment, user: User) -> bool:
        if a.recipient_group_scope:
            group = self.state.groups.get(a.recipient_group_scope)
            return group is not None and user.id in group.members
        if a.custom_resource_scope:
            prop, value = self._parse_filter(
                self.scope(a.custom_resource_scope).recipient_restriction_filter
            )
            if prop == "memberofgroup":
                found = [r for r in self.find(value.removeprefix("CN=").split(",")[0]) if r.group]
                return any(
                    user.id in self.state.groups[r.id].members
                    for r in found
                    if r.id in self.state.groups
                )
            if prop == "primarysmtpaddress":
                return (user.mail or "").lower() == value.lower()
            return (user.mail or "").split("@")[0].lower() == value.lower()
        return True  # an unscoped assignment covers the organization

    def rbac_grants(
        self, sp_object_id: str, user: User, role: str = EWS_ROLE, *, effective: bool = True
    ) -> list[RoleAssignment]:
        """Role assignments giving ``role`` to the app for ``user``'s mailbox."""
        now = self._now()
        return [
            a
            for a in self.ex.role_assignments.values()
            if a.app_object_id == sp_object_id
            and a.role == role
            and (not effective or seen(a.effective, now))
            and self._assignment_covers(a, user)
        ]

    def has_rbac_role(self, sp_object_id: str, role: str = EWS_ROLE) -> bool:
        """Whether the app holds ``role`` through RBAC at all (scoped anywhere)."""
        return any(
            a.app_object_id == sp_object_id and a.role == role
            for a in self.ex.role_assignments.values()
        )

    # --- EWS access decision --------------------------------------------------------------

    def ews_decision(
        self, app_id: str, sp_object_id: str, roles: list[str], mailbox: str | None
    ) -> EwsDecision:
        """Enforcement order: permissions, EWS org switch and allow list, access policies, mailbox.

        ``mailbox`` is None for a request without an ExchangeImpersonation header: an app-only
        caller that passes the permission and EWS checks is then denied with layer
        ``no_impersonation``.
        """
        tenant_wide = "full_access_as_app" in roles
        if not tenant_wide and not self.has_rbac_role(sp_object_id):
            return EwsDecision(
                False,
                "no_permission",
                "The token contains no permissions, or permissions can not be understood.",
            )
        enabled, allowed = self.effective_org()
        if enabled is False:
            return EwsDecision(
                False, "ews_disabled", "EWS is disabled for the organization (EwsEnabled=$false)."
            )
        if enabled is True and allowed is not None and app_id.lower() not in allowed:
            return EwsDecision(
                False, "not_allow_listed", f"Application {app_id} is not in EwsAllowedAppIDs."
            )
        if mailbox is None:
            return EwsDecision(
                False,
                "no_impersonation",
                "ExchangeImpersonation SOAP header must be present for this type of OAuth token.",
            )
        user = self.has_mailbox(mailbox)
        if user is None:
            restricted = any(
                p.app_id == app_id.lower()
                and p.access_right == "RestrictAccess"
                and seen(p.effective, self._now())
                for p in self.ex.policies.values()
            )
            if tenant_wide and restricted:
                return EwsDecision(
                    False,
                    "access_policy",
                    "outside the scope of every RestrictAccess policy for the app",
                )
            return EwsDecision(
                False, "mailbox_missing", "The SMTP address has no mailbox associated with it."
            )
        if tenant_wide:
            ok, why = self.policy_verdict(app_id, user, effective=True)
            if not ok:
                return EwsDecision(False, "access_policy", why)
            return EwsDecision(True)
        if not self.rbac_grants(sp_object_id, user):
            return EwsDecision(
                False,
                "rbac_scope",
                "The application's role assignment does not cover this mailbox.",
            )
        return EwsDecision(True)
