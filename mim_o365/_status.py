"""``status``: is a registration healthy, and if not, what to do about it.

Reads only. Every layer MIM Service depends on is looked at: the client secrets (and when each
expires), the service principal and its permission (admin consent for ``full_access_as_app``, or
an RBAC for Applications role assignment), the scoping group and access policy, the organization's
EWS switch and allow list, and, when a secret is given, a live EWS check as the MIM installer does.

``list_registrations`` lists every application this tool registered in the tenant (tag
``mim-o365``) from one paged Graph query, judging each by its secrets alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from mim_o365._clock import Clock
from mim_o365._clouds import Cloud
from mim_o365._errors import ConfigurationError, NotFoundError
from mim_o365._exchange_steps import policy_group_name
from mim_o365._gateways._exchange import ExchangeAdmin
from mim_o365._gateways._graph import AppInfo, GraphDirectory, SecretInfo
from mim_o365._gateways._identity import TokenProbe
from mim_o365._plan import (
    ADOPTED_TAG,
    MANAGED_TAG,
    SECRET_NAME_PREFIX,
    check_mailbox,
    mailbox_from_tags,
    secret_is_ours,
)
from mim_o365._secrets import Secret
from mim_o365._verify import Verification, verify_once
from mim_o365._wellknown import EXCHANGE_APP_ID, FULL_ACCESS_AS_APP

HEALTHY, WARNING, BROKEN = "healthy", "warning", "broken"
_RANK = {HEALTHY: 0, WARNING: 1, BROKEN: 2}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class ApplicationNotFoundError(NotFoundError):
    """The application whose status was asked for does not exist (for monitoring: broken)."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(frozen=True)
class SecretState:
    """One client secret as ``status`` sees it (metadata only, never the value).

    ``made_by`` is ``"mim-o365"`` for secrets this tool minted (their display name starts with
    it) and ``"foreign"`` for any other. ``state`` is ``valid``, ``expired`` or ``not yet valid``.
    """

    key_id: str
    display_name: str | None
    hint: str | None
    created: datetime | None
    expires: datetime | None
    made_by: str
    state: str
    days_left: int | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "key_id": self.key_id,
            "display_name": self.display_name,
            "hint": self.hint,
            "created": _iso(self.created),
            "expires": _iso(self.expires),
            "made_by": self.made_by,
            "state": self.state,
            "days_left": self.days_left,
        }


def secret_states(secrets: Iterable[SecretInfo], now: datetime) -> tuple[SecretState, ...]:
    """Each secret's state at ``now``, newest expiry first (a secret without end date first)."""
    out = []
    for s in secrets:
        if s.end is not None and s.end <= now:
            state = "expired"
        elif s.start is not None and s.start > now:
            state = "not yet valid"
        else:
            state = "valid"
        days = None if s.end is None else int((s.end - now) / timedelta(days=1))
        made_by = SECRET_NAME_PREFIX if secret_is_ours(s.display_name) else "foreign"
        out.append(
            SecretState(s.key_id, s.display_name, s.hint, s.start, s.end, made_by, state, days)
        )
    far = datetime.max.replace(tzinfo=now.tzinfo)
    return tuple(sorted(out, key=lambda s: s.expires or far, reverse=True))


def secrets_health(
    states: Sequence[SecretState], now: datetime, warn_days: int, *, fix: str
) -> tuple[str, list[str]]:
    """Health from secrets alone: broken without an unexpired secret, warning when the newest
    valid secret expires within ``warn_days``. ``fix`` names the command that mints a new one."""
    valid = [s for s in states if s.state == "valid"]
    if not valid:
        later = [s for s in states if s.state == "not yet valid"]
        why = (
            "its only unexpired secrets are not valid yet"
            if later
            else "every client secret has expired"
            if states
            else "the application has no client secret"
        )
        return BROKEN, [
            f"no valid client secret: {why}, so MIM Service cannot sign in. Mint one with {fix} "
            "and give it to MIM Service."
        ]
    newest = valid[0]  # sorted newest expiry first
    if newest.expires is not None and newest.expires - now <= timedelta(days=warn_days):
        return WARNING, [
            f"the newest client secret ({newest.hint or '?'}..., key {newest.key_id}) expires on "
            f"{newest.expires:%Y-%m-%d}, in {newest.days_left} days: rotate it with {fix} "
            "before then."
        ]
    return HEALTHY, []


def check_app_id(app_id: str) -> str:
    """The application (client) id, stripped; ConfigurationError when it is not a GUID."""
    value = app_id.strip()
    if not _GUID.match(value):
        raise ConfigurationError(
            f"--app-id {app_id!r} is not an application (client) id; give the GUID shown as "
            "ApplicationId by `mim-o365 register` (or listed by `mim-o365 status --all`)"
        )
    return value.lower()


def mailbox_of(app: AppInfo) -> str | None:
    """The mailbox named by the app's ``mim-o365:mailbox:`` tag, if any."""
    return mailbox_from_tags(app.tags)


def _rotate_fix(app_id: str) -> str:
    return f"`mim-o365 rotate --app-id {app_id}`"


@dataclass(frozen=True)
class Status:
    """The health of one registration, layer by layer.

    ``health`` is ``healthy``, ``warning`` (the newest valid secret expires within
    ``warn_days``) or ``broken``; ``problems`` says in plain words what is wrong and how to fix
    it; ``notes`` holds observations that do not change the health. Fields are None where a
    layer was not checked or does not apply.
    """

    application_id: str
    object_id: str
    display_name: str
    tenant_id: str
    mailbox: str | None
    adopted: bool
    managed: bool
    checked_at: datetime
    warn_days: int
    health: str
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    secrets: tuple[SecretState, ...]
    service_principal_id: str | None
    consent: str  # "granted" (full_access_as_app) | "rbac" | "missing"
    scope: str  # "policy" | "rbac" | "none"
    group: str | None
    group_exists: bool | None
    mailbox_in_group: bool | None
    access_policy: str | None
    access_policy_valid: bool | None
    rbac_assignment: str | None
    ews_enabled: bool | None
    ews_allow_list: tuple[str, ...] | None
    ews_allow_listed: bool | None
    verification: Verification | None = None

    @property
    def ok(self) -> bool:
        """True when healthy."""
        return self.health == HEALTHY

    @property
    def valid_until(self) -> datetime | None:
        """When the newest valid secret expires: after that MIM Service has no working secret
        (None when there is no valid secret, or one never expires)."""
        valid = [s for s in self.secrets if s.state == "valid"]
        return valid[0].expires if valid else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "application_id": self.application_id,
            "object_id": self.object_id,
            "display_name": self.display_name,
            "tenant_id": self.tenant_id,
            "mailbox": self.mailbox,
            "adopted": self.adopted,
            "managed": self.managed,
            "checked_at": self.checked_at.isoformat(),
            "warn_days": self.warn_days,
            "health": self.health,
            "problems": list(self.problems),
            "notes": list(self.notes),
            "secrets": [s.as_dict() for s in self.secrets],
            "valid_until": _iso(self.valid_until),
            "service_principal_id": self.service_principal_id,
            "consent": self.consent,
            "scope": self.scope,
            "group": self.group,
            "group_exists": self.group_exists,
            "mailbox_in_group": self.mailbox_in_group,
            "access_policy": self.access_policy,
            "access_policy_valid": self.access_policy_valid,
            "rbac_assignment": self.rbac_assignment,
            "ews_enabled": self.ews_enabled,
            "ews_allow_list": list(self.ews_allow_list)
            if self.ews_allow_list is not None
            else None,
            "ews_allow_listed": self.ews_allow_listed,
            "verification": self.verification.as_dict() if self.verification else None,
        }


@dataclass(frozen=True)
class RegistrationSummary:
    """One line of ``status --all``: a registration judged by its secrets alone.

    ``next_expiry`` is when the soonest valid secret expires; ``valid_until`` when the newest
    does (after that MIM Service has no working secret).
    """

    application_id: str
    object_id: str
    display_name: str
    mailbox: str | None
    adopted: bool
    secrets: int
    next_expiry: datetime | None
    valid_until: datetime | None
    health: str
    problems: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "application_id": self.application_id,
            "object_id": self.object_id,
            "display_name": self.display_name,
            "mailbox": self.mailbox,
            "adopted": self.adopted,
            "secrets": self.secrets,
            "next_expiry": _iso(self.next_expiry),
            "valid_until": _iso(self.valid_until),
            "health": self.health,
            "problems": list(self.problems),
        }


def summarize(app: AppInfo, now: datetime, warn_days: int) -> RegistrationSummary:
    """A registration's line, from the application object alone (no further requests)."""
    states = secret_states(app.secrets, now)
    health, problems = secrets_health(states, now, warn_days, fix=_rotate_fix(app.app_id))
    valid = [s for s in states if s.state == "valid"]
    ends = [s.expires for s in valid if s.expires is not None]
    return RegistrationSummary(
        application_id=app.app_id,
        object_id=app.id,
        display_name=app.display_name,
        mailbox=mailbox_of(app),
        adopted=ADOPTED_TAG in app.tags,
        secrets=len(states),
        next_expiry=min(ends) if ends else None,
        valid_until=None
        if any(s.expires is None for s in valid)
        else (max(ends) if ends else None),
        health=health,
        problems=tuple(problems),
    )


async def list_registrations(
    *, directory: GraphDirectory, clock: Clock, warn_days: int = 30
) -> list[RegistrationSummary]:
    """Every application tagged ``mim-o365`` (all pages of one query), by app id."""
    if warn_days < 0:
        raise ConfigurationError(f"--warn-days {warn_days}: give 0 or more days")
    apps = await directory.applications_with_tag(MANAGED_TAG)
    now = clock.now()
    seen: dict[str, RegistrationSummary] = {}
    for app in apps:
        seen.setdefault(app.id, summarize(app, now, warn_days))
    return sorted(seen.values(), key=lambda r: (r.mailbox or "", r.application_id))


def _addr(row: dict[str, Any]) -> str:
    return str(row.get("PrimarySmtpAddress") or row.get("WindowsEmailAddress") or "").lower()


async def get_status(
    *,
    directory: GraphDirectory,
    exchange: ExchangeAdmin,
    probe: TokenProbe,
    cloud: Cloud,
    clock: Clock,
    app_id: str,
    warn_days: int = 30,
    secret: Secret | None = None,
    mailbox: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Status:
    """The health of the registration of ``app_id`` (see :class:`Status`)."""
    app_id = check_app_id(app_id)
    if warn_days < 0:
        raise ConfigurationError(f"--warn-days {warn_days}: give 0 or more days")
    if mailbox is not None:
        mailbox = check_mailbox(mailbox)
    tenant = await directory.organization()
    exchange.tenant_id = tenant.id
    app = await directory.application_by_app_id(app_id)
    if app is None:
        raise ApplicationNotFoundError(
            f"no application {app_id} in tenant {tenant.initial_domain}: it was deleted, or the id "
            "is wrong (`mim-o365 status --all` lists the registrations); `mim-o365 register` "
            "creates a new one",
            service="graph",
            status_code=404,
        )
    mailbox = mailbox or mailbox_of(app)
    if secret is not None and mailbox is None:
        raise ConfigurationError(
            f"application {app_id} has no mim-o365 mailbox tag; pass --mailbox to say which "
            "mailbox to verify"
        )
    now = clock.now()
    broken: list[str] = []
    notes: list[str] = []
    managed = MANAGED_TAG in app.tags
    adopted = ADOPTED_TAG in app.tags
    if not managed:
        notes.append(
            "the application is not tagged as registered by mim-o365 (`register --app-id` adopts it)"
        )
    register_fix = (
        f"`mim-o365 register --mailbox {mailbox}`"
        if mailbox
        else f"`mim-o365 register --mailbox <MIM mailbox> --app-id {app_id}`"
    )

    states = secret_states(app.secrets, now)
    secret_health, secret_problems = secrets_health(states, now, warn_days, fix=_rotate_fix(app_id))

    # --- the service principal and its permission ------------------------------------------
    sp = await directory.service_principal(app_id)
    exo = await directory.service_principal(EXCHANGE_APP_ID)
    role_id = exo.app_roles.get(FULL_ACCESS_AS_APP) if exo else None
    tenant_wide = False
    if sp is None:
        broken.append(
            f"the application has no service principal in tenant {tenant.initial_domain}, so it "
            f"cannot sign in: run {register_fix} to create it"
        )
    elif exo is not None and role_id is not None:
        tenant_wide = any(
            a.app_role_id.lower() == role_id.lower() and a.resource_id == exo.id
            for a in await directory.app_role_assignments(sp.id)
        )
    rbac_rows = [
        a
        for a in await exchange.role_assignments(app_id)
        if "EWS.AccessAsApp" in str(a.get("Role"))
    ]
    rbac = rbac_rows[0] if rbac_rows else None
    policies = [
        p
        for p in await exchange.access_policies()
        if str(p.get("AppId", "")).lower() == app_id.lower()
        and p.get("AccessRight") == "RestrictAccess"
    ]
    policy = policies[0] if policies else None
    if rbac is not None:
        consent, scope = "rbac", "rbac"
        group: str | None = str(rbac.get("RecipientGroupScope") or "") or None
        if tenant_wide:
            notes.append(
                f"the app also holds tenant-wide {FULL_ACCESS_AS_APP}, which reaches every "
                f"mailbox despite the RBAC scope: run `mim-o365 register --scope rbac --mailbox "
                f"{mailbox or '<MIM mailbox>'}` to remove it"
            )
    else:
        consent = "granted" if tenant_wide else "missing"
        scope = "policy" if policy is not None else "none"
        group = (str(policy.get("ScopeName") or "") or None) if policy is not None else None
        if not tenant_wide and sp is not None:
            broken.append(
                f"the app holds no permission on Exchange Online: admin consent for "
                f"{FULL_ACCESS_AS_APP} is missing (and there is no RBAC for Applications role "
                f"assignment). Run {register_fix}, or have a Global Administrator open "
                f"{cloud.admin_consent_url(tenant.id, app_id)}"
            )

    # --- the scoping group and the access policy -------------------------------------------
    group_exists: bool | None = None
    in_group: bool | None = None
    if scope == "none":
        default = policy_group_name(app_id)
        if await exchange.distribution_group(default) is not None:
            group, scope = default, "policy"
            broken.append(
                f"the group '{default}' exists but no RestrictAccess application access policy "
                f"uses it for this app: run {register_fix} to restore the policy"
            )
        else:
            notes.append(
                "the app is not restricted to a mailbox (no access policy, no RBAC scope): it can "
                "open every mailbox in the organization; `mim-o365 register --scope policy` "
                "restricts it"
            )
    if group is not None:
        row = await exchange.distribution_group(group)
        group_exists = row is not None
        if row is None:
            broken.append(
                f"the group '{group}' that scopes the app to the mailbox no longer exists, so "
                f"EWS access is refused: run {register_fix} to recreate it"
            )
        elif mailbox is not None:
            members = {_addr(m) for m in await exchange.group_members(group)}
            in_group = mailbox.lower() in members
            if not in_group:
                broken.append(
                    f"{mailbox} is not a member of the group '{group}', so the app may not open "
                    f"it: run {register_fix} to add it back"
                )
    policy_valid: bool | None = None
    if policy is not None:
        policy_valid = policy.get("IsValid") is not False
        if not policy_valid and group_exists is not False:
            broken.append(
                f"the access policy {policy.get('Identity')} is not valid (its scope is gone): run "
                f"{register_fix}"
            )

    # --- EWS switch and allow list -----------------------------------------------------------
    org = await exchange.org_ews()
    listed: bool | None = None
    if org.enabled is False:
        broken.append(
            "EWS is disabled for the whole organization (EwsEnabled is $false), so MIM Service "
            "cannot send mail: an Exchange admin must decide to turn it back on, e.g. "
            f"`mim-o365 register --mailbox {mailbox or '<MIM mailbox>'} --enable-ews` (sets "
            "EwsEnabled=$true with an allow list of this app and the ids already listed)"
        )
    elif org.enabled is None:
        broken.append(
            "EwsEnabled is not set; since October 2026 Exchange Online treats that as disabled: "
            f"run `mim-o365 register --mailbox {mailbox or '<MIM mailbox>'} --enable-ews` to set "
            "it to $true with an allow list"
        )
    if org.allowed is not None:
        listed = app_id.lower() in {a.lower() for a in org.allowed}
        if org.enabled is True and not listed:
            broken.append(
                "the app is not on the organization's EwsAllowedAppIDs, so EWS refuses it: run "
                f"{register_fix} (it adds the id and keeps every other one; the change takes up "
                "to 24 hours)"
            )
    elif org.enabled is True:
        notes.append("EwsAllowedAppIDs is not set: every application may use EWS")

    # --- a live check, as the MIM installer does ---------------------------------------------
    verification: Verification | None = None
    if secret is not None and mailbox is not None:
        verification = await verify_once(
            probe=probe,
            cloud=cloud,
            tenant_id=tenant.id,
            app_id=app_id,
            secret=secret,
            mailbox=mailbox,
            admin=exchange,
            rbac=scope == "rbac",
            transport=transport,
        )
        if not verification.ok:
            broken.append(
                f"the EWS check with the given secret failed at layer '{verification.layer}': "
                f"{verification.explanation}"
            )

    health = BROKEN if broken else secret_health
    problems = secret_problems + broken
    return Status(
        application_id=app.app_id,
        object_id=app.id,
        display_name=app.display_name,
        tenant_id=tenant.id,
        mailbox=mailbox,
        adopted=adopted,
        managed=managed,
        checked_at=now,
        warn_days=warn_days,
        health=health,
        problems=tuple(problems),
        notes=tuple(notes),
        secrets=states,
        service_principal_id=sp.id if sp else None,
        consent=consent,
        scope=scope,
        group=group,
        group_exists=group_exists,
        mailbox_in_group=in_group,
        access_policy=str(policy.get("Identity")) if policy is not None else None,
        access_policy_valid=policy_valid,
        rbac_assignment=str(rbac.get("Identity")) if rbac is not None else None,
        ews_enabled=org.enabled,
        ews_allow_list=org.allowed,
        ews_allow_listed=listed,
        verification=verification,
    )


def worst(healths: Iterable[str]) -> str:
    """The worst of several healths (healthy when there are none)."""
    return max(healths, key=lambda h: _RANK.get(h, 2), default=HEALTHY)
