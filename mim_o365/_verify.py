"""Verification as the MIM installer does it, with a diagnosis of the layer that denies access.

Layers, in the order Microsoft enforces them: the app and its secret at the token service, the
role in the token, the organization's EWS switch and allow list, application access policies
(or RBAC for Applications scopes), and the mailbox itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from mim_o365._clouds import Cloud
from mim_o365._errors import AuthenticationError, MimO365Error, PropagationTimeoutError
from mim_o365._gateways._ews import check_inbox
from mim_o365._gateways._exchange import ExchangeAdmin
from mim_o365._gateways._identity import TokenProbe, token_roles
from mim_o365._retry import Deadline, Pending, ProgressCallback, Ready, poll
from mim_o365._secrets import Secret
from mim_o365._wellknown import FULL_ACCESS_AS_APP

# Layers that Microsoft's propagation can clear by itself: worth polling.
PROPAGATING = frozenset(
    {
        "propagating",
        "unreachable",
        "app_not_known",
        "secret_not_valid",
        "no_role",
        "not_allow_listed",
        "access_policy",
        "ews_denied",
    }
)

LAYER_HELP = {
    "tenant": "the tenant is unknown to the token service: check the tenant id and the cloud",
    "credentials": "the token service refused the application id or secret",
    "app_not_known": "the token service does not know this application id in the tenant (a typo, or an app "
    "created moments ago)",
    "secret_not_valid": "the new client secret is not accepted yet (Entra ID replicates new secrets for "
    "seconds to minutes)",
    "no_role": "the token carries no full_access_as_app role: admin consent is missing or not replicated yet",
    "ews_disabled": "EWS is disabled for the whole organization (EwsEnabled is $false)",
    "ews_not_configured": "EwsEnabled is not set; since October 2026 Exchange Online treats that as disabled",
    "not_allow_listed": "the app is not on the organization's EwsAllowedAppIDs (changes take up to 24 hours)",
    "access_policy": "an application access policy keeps the app out of this mailbox (changes take up to an hour)",
    "mailbox_missing": "the address has no mailbox in Exchange Online",
    "ews_denied": "EWS refused access (HTTP 403); sign in as an Exchange admin to tell which setting",
    "error": "EWS failed unexpectedly",
    "unreachable": "the token service could not be reached",
    "propagating": "the organization's settings allow the app, but Exchange Online has not applied a recent "
    "change yet (the EWS allow list takes up to 24 hours, access policies up to an hour): "
    "check again later",
}


@dataclass(frozen=True)
class Check:
    """One layer's result; ``ok`` is None when the layer was not reached or not checkable."""

    name: str
    ok: bool | None
    detail: str = ""


@dataclass(frozen=True)
class Verification:
    """Whether the app can reach the mailbox through EWS, and if not, which layer denies."""

    ok: bool
    layer: str | None
    checks: tuple[Check, ...]

    @property
    def explanation(self) -> str:
        """What the failing layer means, and what to do."""
        if self.layer is None:
            return "EWS access works"
        return LAYER_HELP.get(self.layer, self.layer)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "ok": self.ok,
            "layer": self.layer,
            "explanation": self.explanation,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


async def _diagnose_403(
    admin: ExchangeAdmin | None, app_id: str, mailbox: str, rbac: bool
) -> tuple[str, str]:
    if admin is None:
        return "ews_denied", "no admin identity to read the organization's settings"
    try:
        org = await admin.org_ews()
        if org.enabled is False:
            return "ews_disabled", "EwsEnabled=$false"
        if org.enabled is None:
            return "ews_not_configured", "EwsEnabled is not set"
        if org.allowed is not None and app_id.lower() not in {a.lower() for a in org.allowed}:
            return "not_allow_listed", "not in EwsAllowedAppIDs yet"
        if not rbac:
            verdict = await admin.test_access_policy(mailbox, app_id)
            if verdict != "Granted":
                return "access_policy", f"Test-ApplicationAccessPolicy says {verdict}"
        return (
            "propagating",
            "the settings are right; Exchange Online has not applied a recent change yet",
        )
    except MimO365Error as exc:
        return "ews_denied", f"could not read the settings: {exc}"


async def verify_once(
    *,
    probe: TokenProbe,
    cloud: Cloud,
    tenant_id: str,
    app_id: str,
    secret: Secret,
    mailbox: str,
    admin: ExchangeAdmin | None = None,
    rbac: bool = False,
    transport: httpx.BaseTransport | None = None,
) -> Verification:
    """One pass over every layer (no waiting)."""
    checks: list[Check] = []
    try:
        token = await probe.acquire(app_id, secret, cloud.exchange_scope)
    except AuthenticationError as exc:
        layer = "tenant" if exc.error_code in ("AADSTS90002", "AADSTS900023") else "credentials"
        return Verification(False, layer, (Check("token", False, str(exc)),))
    if isinstance(token, Pending):
        layer = "secret_not_valid" if token.code == "AADSTS7000215" else "app_not_known"
        if token.code is None:
            layer = "unreachable"
        return Verification(False, layer, (Check("token", False, token.reason),))
    checks.append(Check("token", True, "the app's secret gets an Exchange token"))
    has_role = FULL_ACCESS_AS_APP in token_roles(token.value)
    if not has_role and not rbac:
        checks.append(Check("role", False, "no full_access_as_app in the token"))
        return Verification(False, "no_role", tuple(checks))
    checks.append(
        Check(
            "role",
            True,
            "full_access_as_app" if has_role else "RBAC for Applications (no tenant-wide role)",
        )
    )
    outcome = await asyncio.to_thread(
        check_inbox,
        cloud,
        tenant_id,
        app_id,
        secret,
        mailbox,
        transport=transport,
        access_token=token.value,
    )
    if outcome.ok:
        checks.append(
            Check("ews", True, f"GetFolder(inbox) on {mailbox} with impersonation succeeded")
        )
        return Verification(True, None, tuple(checks))
    if outcome.kind == "mailbox_missing":
        checks.append(Check("ews", False, outcome.detail))
        return Verification(False, "mailbox_missing", tuple(checks))
    if outcome.kind == "unauthorized":
        layer = "no_role" if rbac else "credentials"
        checks.append(Check("ews", False, outcome.detail))
        return Verification(False, layer, tuple(checks))
    if outcome.kind in ("forbidden", "access_denied"):
        layer, why = await _diagnose_403(admin, app_id, mailbox, rbac)
        checks.append(Check("ews", False, f"{outcome.detail}: {why}"))
        return Verification(False, layer, tuple(checks))
    checks.append(Check("ews", False, outcome.detail))
    return Verification(False, "error", tuple(checks))


async def verify_until_ok(
    *, deadline: Deadline, on_progress: ProgressCallback | None, **kw: Any
) -> Verification:
    """Verify, polling while a layer may still be propagating, until the deadline; never raises for
    a denial (the report says which layer denies)."""
    last: list[Verification] = []

    async def attempt() -> Ready[Verification] | Pending:
        result = await verify_once(**kw)
        last.append(result)
        if result.ok or result.layer not in PROPAGATING:
            return Ready(result)
        return Pending(result.explanation)

    try:
        return await poll(
            "EWS access to the mailbox", attempt, deadline=deadline, on_progress=on_progress
        )
    except PropagationTimeoutError:
        return last[-1]
