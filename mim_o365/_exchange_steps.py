"""Steps 6-7 of the flow: restrict the app to the mailbox, and keep it on the EWS allow list.

Every step reads first and writes only what is missing, so a rerun converges. The allow list is a
single string that each write replaces whole: it is read, merged and written back, and read again
to prove that no other application's id was dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from mim_o365._errors import ConflictError, ServiceError
from mim_o365._gateways._exchange import ExchangeAdmin

log = logging.getLogger("mim_o365")

EWS_ROLE = "Application EWS.AccessAsApp"


def policy_group_name(app_id: str) -> str:
    """The default name of the group that scopes the app to the MIM mailbox."""
    return f"mim-o365 scope {app_id}"


@dataclass
class ExchangeResult:
    """What the Exchange steps found, created and tested."""

    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    scope: dict[str, Any] | None = None
    allow_listed: bool | None = None
    ews_problem: str | None = None


def _addr(row: dict[str, Any]) -> str:
    return str(row.get("PrimarySmtpAddress") or row.get("WindowsEmailAddress") or "").lower()


async def ensure_group(
    admin: ExchangeAdmin, name: str, mailbox: str, app_id: str, out: ExchangeResult
) -> dict[str, Any]:
    """The mail-enabled security group holding the MIM mailbox (reused when it exists)."""
    group = await admin.distribution_group(name)
    if group is None:
        try:
            group = await admin.new_security_group(
                name, f"Scopes app {app_id} to the MIM Service mailbox (mim-o365)."
            )
            out.created.append("policy group")
        except ConflictError:
            group = await admin.distribution_group(name)
            if group is None:
                raise
    members = {_addr(m) for m in await admin.group_members(name)}
    if mailbox.lower() not in members and await admin.add_group_member(name, mailbox):
        out.changed.append("policy group membership")
    return group


async def _other_mailbox(admin: ExchangeAdmin, mailbox: str, group_members: set[str]) -> str | None:
    for row in await admin.mailboxes():
        address = _addr(row)
        if address and address != mailbox.lower() and address not in group_members:
            return address
    return None


async def scope_with_policy(
    admin: ExchangeAdmin, app_id: str, mailbox: str, group_name: str, out: ExchangeResult
) -> None:
    """RestrictAccess application access policy on a group holding only the MIM mailbox."""
    group = await ensure_group(admin, group_name, mailbox, app_id, out)
    group_addr = _addr(group)
    names = {
        str(group.get(k) or "").lower()
        for k in (
            "Name",
            "DisplayName",
            "Identity",
            "PrimarySmtpAddress",
            "Guid",
            "ExternalDirectoryObjectId",
        )
    } - {""}
    mine = [
        p
        for p in await admin.access_policies()
        if str(p.get("AppId", "")).lower() == app_id.lower()
    ]
    policy = next(
        (
            p
            for p in mine
            if {str(p.get("ScopeName", "")).lower(), str(p.get("ScopeIdentity", "")).lower()}
            & names
            and p.get("AccessRight") == "RestrictAccess"
        ),
        None,
    )
    if policy is None:
        policy = await admin.new_access_policy(
            app_id, group_addr or group_name, f"mim-o365: restrict app {app_id} to {mailbox}"
        )
        out.created.append("access policy")
    others = [p for p in mine if p is not policy]
    if others:
        log.warning(
            "app %s has %d other access policies; they were left as they are", app_id, len(others)
        )
    granted = await admin.test_access_policy(mailbox, app_id)
    members = {_addr(m) for m in await admin.group_members(group_name)}
    other = await _other_mailbox(admin, mailbox, members)
    other_result = await admin.test_access_policy(other, app_id) if other else None
    out.scope = {
        "mode": "policy",
        "group": group_name,
        "group_address": group_addr,
        "policy": policy.get("Identity"),
        "mailbox_test": granted,
        "other_mailbox": other,
        "other_mailbox_test": other_result,
    }
    if granted != "Granted" or (other_result is not None and other_result != "Denied"):
        log.warning("access policy test: %s -> %s, %s -> %s", mailbox, granted, other, other_result)


async def scope_with_rbac(
    admin: ExchangeAdmin,
    app_id: str,
    sp_object_id: str,
    display_name: str,
    mailbox: str,
    group_name: str,
    out: ExchangeResult,
) -> None:
    """RBAC for Applications: ``Application EWS.AccessAsApp`` scoped to a group holding the mailbox."""
    group = await ensure_group(admin, group_name, mailbox, app_id, out)
    if await admin.exo_service_principal(app_id) is None:
        try:
            await admin.new_exo_service_principal(app_id, sp_object_id, display_name)
            out.created.append("Exchange service principal")
        except ConflictError:
            pass
    existing = [
        a
        for a in await admin.role_assignments(app_id)
        if "EWS.AccessAsApp" in str(a.get("Role", ""))
    ]
    if not existing:
        await admin.new_role_assignment(app_id, EWS_ROLE, group_name, f"mim-o365 EWS {app_id}")
        out.created.append("role assignment")
    out.scope = {
        "mode": "rbac",
        "group": group_name,
        "group_address": _addr(group),
        "role": EWS_ROLE,
    }


async def ensure_allow_listed(
    admin: ExchangeAdmin, app_id: str, *, enable_ews: bool, out: ExchangeResult
) -> None:
    """Merge the app into EwsAllowedAppIDs; never drop another id; touch EwsEnabled only when told to."""
    org = await admin.org_ews()
    current = tuple(org.allowed or ())
    present = app_id.lower() in {a.lower() for a in current}
    if org.enabled is not True:
        state = (
            "$false" if org.enabled is False else "not set (treated as disabled since October 2026)"
        )
        if not enable_ews:
            out.allow_listed = present
            listed = ", ".join(current) or "none"
            out.ews_problem = (
                f"EwsEnabled is {state}, so EWS is off for the whole organization and MIM Service cannot send "
                "mail. That is an organization-wide decision: rerun with --enable-ews to set EwsEnabled=$true "
                f"with an allow list of this app plus the ids already listed ({listed}); every other app that "
                "must keep using EWS needs to be on that list too. Nothing was changed."
            )
            return
        await admin.set_org_ews(enabled=True, allowed=current if present else (*current, app_id))
        out.changed.append("EwsEnabled")
    elif org.allowed is None:
        # EWS on with no allow list: every app may use EWS. Writing a list would lock the others out.
        out.allow_listed = True
        return
    elif present:
        out.allow_listed = True
        return
    else:
        await admin.set_org_ews(allowed=(*current, app_id))
    after = await admin.org_ews()
    kept = {a.lower() for a in after.allowed or ()}
    lost = [a for a in current if a.lower() not in kept]
    if lost:
        raise ServiceError(
            f"EwsAllowedAppIDs lost {', '.join(lost)} while adding {app_id} (another writer at the same "
            "time?); run again to repair it",
            service="exchange",
        )
    out.allow_listed = app_id.lower() in kept
    if not present:
        out.changed.append("EwsAllowedAppIDs")
