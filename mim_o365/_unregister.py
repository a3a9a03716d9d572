"""``unregister``: remove what ``register`` left in the tenant, and nothing else.

What is ours is read from the conventions ``register`` leaves: the app's tags (``mim-o365``,
``mim-o365:mailbox:<mailbox>``, ``mim-o365:adopted``), secrets whose display name starts with
``mim-o365``, the scoping group's notes naming the app, the access policy's description, the RBAC
role assignment's name.

The order takes access away before it takes restrictions away, so there is never a moment in
which the app could reach more than before:

1. client secrets (the app can no longer sign in);
2. admin consent for ``full_access_as_app``;
3. the RBAC for Applications role assignment, then Exchange's service principal pointer;
4. the app id from ``EwsAllowedAppIDs`` (read, remove, write, read again: no other id is lost);
5. the application access policy;
6. the scoping group, or only our mailbox in it when it has other members;
7. the service principal, then the application (restorable from deleted items for 30 days).

An application ``register`` adopted (``--app-id``, tag ``mim-o365:adopted``) is never deleted: only
our secrets and our tags are removed; its consent, service principal, Exchange scoping and allow
list entry stay, because removing them would widen (a RestrictAccess policy) or cut (consent, allow
list) the access of an application that stays, and we cannot tell whether they predate us. Each
step reads first, so a second run finds nothing left and succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mim_o365._errors import PermissionDeniedError, ServiceError
from mim_o365._exchange_steps import EWS_ROLE, policy_group_name
from mim_o365._gateways._exchange import ExchangeAdmin
from mim_o365._gateways._graph import AppInfo, GraphDirectory
from mim_o365._plan import ADOPTED_TAG, MANAGED_TAG, secret_is_ours
from mim_o365._retry import Deadline, ProgressCallback
from mim_o365._status import check_app_id, mailbox_of
from mim_o365._wellknown import EXCHANGE_APP_ID, FULL_ACCESS_AS_APP

log = logging.getLogger("mim_o365")
_OUR_PREFIX = "mim-o365"


@dataclass(frozen=True)
class Unregistration:
    """What ``unregister`` found, removed (or, with ``dry_run``, would remove) and left alone.

    ``plan`` lists the removals in order; ``removed`` those done this run (empty in a dry run,
    and on a second run); ``kept`` says what was left in place and why; ``notes`` anything else
    worth knowing.
    """

    application_id: str
    tenant_id: str
    found: bool
    managed: bool
    adopted: bool
    dry_run: bool
    plan: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]
    display_name: str | None = None
    mailbox: str | None = None
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "application_id": self.application_id,
            "tenant_id": self.tenant_id,
            "display_name": self.display_name,
            "mailbox": self.mailbox,
            "found": self.found,
            "managed": self.managed,
            "adopted": self.adopted,
            "dry_run": self.dry_run,
            "plan": list(self.plan),
            "removed": list(self.removed),
            "kept": list(self.kept),
            "notes": list(self.notes),
        }


@dataclass
class _Step:
    text: str
    run: Callable[[], Awaitable[bool]]


@dataclass
class _Plan:
    steps: list[_Step] = field(default_factory=list)
    last: list[_Step] = field(default_factory=list)  # after every Exchange step
    kept: list[str] = field(default_factory=list)

    def add(self, text: str, run: Callable[[], Awaitable[bool]], *, last: bool = False) -> None:
        (self.last if last else self.steps).append(_Step(text, run))


def _our_tag(tag: str) -> bool:
    return tag == MANAGED_TAG or tag.startswith(f"{MANAGED_TAG}:")


def _addr(row: dict[str, Any]) -> str:
    return str(row.get("PrimarySmtpAddress") or row.get("WindowsEmailAddress") or "").lower()


def _same(a: object, b: object) -> bool:
    return str(a or "").strip().lower() == str(b or "").strip().lower()


async def unregister(
    *,
    directory: GraphDirectory,
    exchange: ExchangeAdmin,
    deadline: Deadline,
    app_id: str,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
) -> Unregistration:
    """Remove the registration of ``app_id`` (see the module docstring for what and in which order)."""
    app_id = check_app_id(app_id)
    tenant = await directory.organization()
    exchange.tenant_id = tenant.id
    app = await directory.application_by_app_id(app_id)
    managed = app is not None and MANAGED_TAG in app.tags
    adopted = app is not None and ADOPTED_TAG in app.tags
    common: dict[str, Any] = {
        "application_id": app_id,
        "tenant_id": tenant.id,
        "found": app is not None,
        "managed": managed,
        "adopted": adopted,
        "dry_run": dry_run,
        "display_name": app.display_name if app else None,
        "mailbox": mailbox_of(app) if app else None,
    }
    if app is not None and not managed and not adopted:
        return Unregistration(
            plan=(),
            removed=(),
            kept=(
                f"application {app_id} ('{app.display_name}') is not tagged as registered by "
                "mim-o365, so nothing of it or for it was touched",
            ),
            **common,
        )
    plan = _Plan()
    if app is None:
        common["notes"] = (
            f"there is no application {app_id} in {tenant.initial_domain} (already removed, or "
            "a wrong id); only what mim-o365 left for it in Exchange Online was looked for",
        )
    await _plan_directory(directory, app, app_id, adopted, plan)
    exchange_plan = _Plan()
    await _plan_exchange(directory, exchange, app_id, common["mailbox"], exchange_plan)
    if adopted:
        for step in exchange_plan.steps:
            plan.kept.append(
                f"{step.text}: left in place, the application was adopted (made elsewhere) and "
                "stays; removing it would widen or cut that application's access"
            )
        plan.kept.extend(exchange_plan.kept)
        exchange_plan = _Plan()
    steps = plan.steps + exchange_plan.steps + plan.last
    kept = plan.kept + exchange_plan.kept
    if dry_run:
        return Unregistration(
            plan=tuple(s.text for s in steps), removed=(), kept=tuple(kept), **common
        )
    removed: list[str] = []
    for step in steps:
        if on_progress is not None:
            on_progress(f"removing {step.text}", deadline.elapsed)
        if await step.run():
            removed.append(step.text)
    return Unregistration(
        plan=tuple(s.text for s in steps), removed=tuple(removed), kept=tuple(kept), **common
    )


async def _plan_directory(
    directory: GraphDirectory, app: AppInfo | None, app_id: str, adopted: bool, plan: _Plan
) -> None:
    """Secrets, consent, service principal and application (or our tags on an adopted app)."""
    if app is None:
        return
    target = app
    for s in app.secrets:
        if adopted and not secret_is_ours(s.display_name):
            plan.kept.append(
                f"client secret {s.hint or '?'}... ({s.key_id}, '{s.display_name or ''}'): not "
                "made by mim-o365, on an adopted application"
            )
            continue
        plan.add(
            f"client secret {s.hint or '?'}... ({s.key_id})",
            _remove_secret(directory, target.id, s.key_id),
        )
    sp = await directory.service_principal(app_id)
    exo = await directory.service_principal(EXCHANGE_APP_ID)
    role_id = exo.app_roles.get(FULL_ACCESS_AS_APP) if exo else None
    grants = []
    if sp is not None and exo is not None and role_id is not None:
        grants = [
            a
            for a in await directory.app_role_assignments(sp.id)
            if a.resource_id == exo.id and _same(a.app_role_id, role_id)
        ]
    if adopted:
        if grants:
            plan.kept.append(
                f"admin consent for {FULL_ACCESS_AS_APP}: the application was adopted, and "
                "mim-o365 cannot tell whether it granted the consent or found it"
            )
        plan.kept.append(
            f"application '{app.display_name}' ({app_id}) and its service principal: adopted, "
            "made elsewhere; mim-o365 never deletes an application it did not create"
        )
        tags = [t for t in app.tags if not _our_tag(t)]
        if tags != list(app.tags):

            async def untag() -> bool:
                await directory.update_application(target.id, tags=tags)
                return True

            plan.add(
                "application tags added by mim-o365 (mim-o365, mailbox, adopted)", untag, last=True
            )
        return
    if exo is not None:
        exo_id = exo.id
        for grant in grants:
            plan.add(
                f"admin consent for {FULL_ACCESS_AS_APP} (app role assignment {grant.id})",
                _revoke(directory, exo_id, grant.id),
            )
    if sp is not None:
        sp_id = sp.id

        async def delete_sp() -> bool:
            return await directory.delete_service_principal(sp_id)

        plan.add(f"service principal {sp_id}", delete_sp, last=True)

    async def delete_app() -> bool:
        return await directory.delete_application(target.id)

    plan.add(
        f"application '{app.display_name}' ({app_id}); Entra ID keeps it restorable in deleted "
        "items for 30 days",
        delete_app,
        last=True,
    )


def _remove_secret(
    directory: GraphDirectory, object_id: str, key_id: str
) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        try:
            await directory.remove_password(object_id, key_id)
        except ServiceError as err:
            if err.status_code in (400, 404):  # already gone ("No password credential found")
                return False
            raise
        return True

    return run


def _revoke(
    directory: GraphDirectory, resource_id: str, assignment_id: str
) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        try:
            await directory.remove_app_role_assignment(resource_id, assignment_id)
        except ServiceError as err:
            if err.status_code == 404:
                return False
            raise
        return True

    return run


async def _plan_exchange(
    directory: GraphDirectory,
    exchange: ExchangeAdmin,
    app_id: str,
    mailbox: str | None,
    plan: _Plan,
) -> None:
    """RBAC assignment and pointer, allow list entry, access policy, scoping group."""
    # --- RBAC for Applications -------------------------------------------------------------
    default_group = policy_group_name(app_id)
    assignments = await exchange.role_assignments(app_id)
    ours_rbac = [
        a
        for a in assignments
        if str(a.get("Name") or a.get("Identity") or "").startswith(_OUR_PREFIX)
        or _same(a.get("RecipientGroupScope"), default_group)
    ]
    other_rbac = [a for a in assignments if a not in ours_rbac]
    for a in ours_rbac:
        identity = str(a.get("Guid") or a.get("Identity"))

        async def drop_assignment(identity: str = identity) -> bool:
            return await exchange.remove_role_assignment(identity)

        plan.add(
            f"RBAC for Applications role assignment '{a.get('Name') or a.get('Identity')}' "
            f"({a.get('Role')} scoped to '{a.get('RecipientGroupScope') or a.get('CustomResourceScope')}')",
            drop_assignment,
        )
    for a in other_rbac:
        plan.kept.append(
            f"RBAC role assignment '{a.get('Name') or a.get('Identity')}' ({a.get('Role')}): not "
            "made by mim-o365"
        )
    if await exchange.exo_service_principal(app_id) is not None:
        if other_rbac:
            plan.kept.append(
                "Exchange's service principal pointer for the app: other role assignments use it"
            )
        else:

            async def drop_pointer() -> bool:
                return await exchange.remove_exo_service_principal(app_id)

            plan.add(
                "Exchange Online service principal pointer (New-ServicePrincipal)", drop_pointer
            )

    # --- EWS allow list ----------------------------------------------------------------------
    org = await exchange.org_ews()
    listed = tuple(org.allowed or ())
    if app_id in {a.lower() for a in listed}:
        remaining = [a for a in listed if a.lower() != app_id]
        if not remaining and org.enabled is True:
            plan.kept.append(
                f"{app_id} stays on EwsAllowedAppIDs as its only entry: EwsEnabled is $true, and "
                "an empty (cleared) list would let every application use EWS. Once the "
                "application is deleted the id grants nothing. If no application needs EWS any "
                "more, an Exchange admin can turn it off: Set-OrganizationConfig -EwsEnabled "
                "$false -EwsAllowedAppIDs $null"
            )
        else:
            rest = f"the other {len(remaining)} stay" if remaining else "the list is cleared"
            plan.add(
                f"{app_id} from the organization's EwsAllowedAppIDs ({rest})",
                _drop_from_allow_list(exchange, app_id),
            )

    # --- application access policies ---------------------------------------------------------
    policies = await exchange.access_policies()
    mine = [p for p in policies if _same(p.get("AppId"), app_id)]
    ours_policies = [
        p
        for p in mine
        if str(p.get("Description") or "").startswith(_OUR_PREFIX)
        or _same(p.get("ScopeName"), default_group)
    ]
    for p in mine:
        if p not in ours_policies:
            plan.kept.append(
                f"access policy {p.get('Identity')} ({p.get('AccessRight')} on "
                f"'{p.get('ScopeName')}'): not made by mim-o365"
            )
    for p in ours_policies:
        identity = str(p.get("Identity"))

        async def drop_policy(identity: str = identity) -> bool:
            return await exchange.remove_access_policy(identity)

        plan.add(
            f"application access policy {identity} ({p.get('AccessRight')} on "
            f"'{p.get('ScopeName')}')",
            drop_policy,
        )

    # --- the scoping group -------------------------------------------------------------------
    names: list[str] = []
    for name in [
        default_group,
        *(str(p.get("ScopeName") or "") for p in ours_policies),
        *(str(a.get("RecipientGroupScope") or "") for a in ours_rbac),
    ]:
        if name and not any(_same(name, n) for n in names):
            names.append(name)
    others_by_role: list[dict[str, Any]] | None = None
    for name in names:
        row = await exchange.distribution_group(name)
        if row is None:
            continue
        label = str(row.get("Name") or name)
        identity = str(row.get("Guid") or label)
        aliases = {
            str(row.get(k) or "").lower()
            for k in ("Name", "DisplayName", "Identity", "PrimarySmtpAddress", "Alias", "Guid")
        } - {""}
        notes = await _group_notes(directory, row)
        if not notes or _OUR_PREFIX not in notes or app_id not in notes.lower():
            plan.kept.append(
                f"group '{label}': not created by mim-o365 for this app (its notes do not say "
                "so); the group and its members are left as they are"
            )
            continue
        if others_by_role is None:
            ours_ids = {str(a.get("Guid") or a.get("Identity")) for a in ours_rbac}
            others_by_role = [
                a
                for a in await exchange.role_assignments_for_role(EWS_ROLE)
                if str(a.get("Guid") or a.get("Identity")) not in ours_ids
            ]
        users = [
            f"access policy {p.get('Identity')}"
            for p in policies
            if p not in ours_policies
            and {str(p.get("ScopeName") or "").lower(), str(p.get("ScopeIdentity") or "").lower()}
            & aliases
        ] + [
            f"role assignment '{a.get('Name') or a.get('Identity')}'"
            for a in others_by_role
            if str(a.get("RecipientGroupScope") or "").lower() in aliases
        ]
        if users:
            plan.kept.append(
                f"group '{label}': also used by {', '.join(users)}; the group and its members are "
                "left as they are"
            )
            continue
        members = sorted({_addr(m) for m in await exchange.group_members(name)} - {""})
        mine_member = mailbox is not None and mailbox.lower() in members
        others = [m for m in members if mailbox is None or m != mailbox.lower()]
        if not others:
            plan.add(
                f"group '{label}' (mail-enabled security group)", _drop_group(exchange, identity)
            )
        elif mailbox is None:
            plan.kept.append(
                f"group '{label}': the application is gone, so its mailbox is unknown, and the "
                f"group has members ({', '.join(members)}); remove it by hand if it is unused"
            )
        else:
            plan.kept.append(
                f"group '{label}': it has other members ({', '.join(others)})"
                + (", so only our mailbox is taken out" if mine_member else "")
            )
            if mine_member:
                assert mailbox is not None  # noqa: S101 - mine_member implies it

                async def drop_member(identity: str = identity, member: str = mailbox) -> bool:
                    return await exchange.remove_group_member(identity, member)

                plan.add(f"{mailbox} from group '{label}' (the group stays)", drop_member)


async def _group_notes(directory: GraphDirectory, row: dict[str, Any]) -> str | None:
    """The notes the group was created with: from Exchange when it returns them, else from the
    group's directory description (where a group made in Exchange keeps them)."""
    if row.get("Notes"):
        return str(row["Notes"])
    object_id = str(row.get("ExternalDirectoryObjectId") or "")
    if not object_id:
        return None
    try:
        return await directory.group_description(object_id)
    except PermissionDeniedError:
        log.warning("cannot read group %s in the directory; treating it as not ours", object_id)
        return None


def _drop_group(exchange: ExchangeAdmin, identity: str) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return await exchange.remove_group(identity)

    return run


def _drop_from_allow_list(exchange: ExchangeAdmin, app_id: str) -> Callable[[], Awaitable[bool]]:
    """Read, remove our id, write, read again; never lose another id."""

    async def run() -> bool:
        org = await exchange.org_ews()
        current = tuple(org.allowed or ())
        if app_id not in {a.lower() for a in current}:
            return False
        remaining = tuple(a for a in current if a.lower() != app_id)
        if remaining:
            await exchange.set_org_ews(allowed=remaining)
        elif org.enabled is True:  # changed since the plan was made; see _plan_exchange
            log.warning("%s is now the only id on EwsAllowedAppIDs; it was left there", app_id)
            return False
        else:
            await exchange.clear_org_ews_allowed()  # $null: the list has no effect while EWS is off
        after = await exchange.org_ews()
        kept = {a.lower() for a in after.allowed or ()}
        lost = [a for a in remaining if a.lower() not in kept]
        if lost:
            raise ServiceError(
                f"EwsAllowedAppIDs lost {', '.join(lost)} while removing {app_id} (another writer "
                "at the same time?); add them back with Set-OrganizationConfig, then run again",
                service="exchange",
            )
        if app_id in kept:
            raise ServiceError(
                f"{app_id} is still on EwsAllowedAppIDs after removing it (another writer at the "
                "same time?); run again",
                service="exchange",
            )
        return True

    return run
