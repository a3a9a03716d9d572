"""The Exchange gateway: the Exchange Online admin API (``InvokeCommand``) over httpx.

Cmdlet failures arrive as HTTP 400 whose useful text is in ``innererror.internalexception``;
they are translated to the project's errors here, and nothing above sees an httpx type.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

from mim_o365._clouds import Cloud
from mim_o365._errors import (
    AuthenticationError,
    ConflictError,
    MimO365Error,
    NotFoundError,
    PermissionDeniedError,
    PropagationTimeoutError,
    ServiceError,
    ThrottledError,
)
from mim_o365._retry import Deadline, Pending, ProgressCallback, Ready, poll

log = logging.getLogger("mim_o365.exchange")

SYSTEM_MAILBOX = "SystemMailbox{bb558c35-97f1-4cb9-8ff7-d53741dc928c}"
_NOT_FOUND = ("ManagementObjectNotFoundException", "MemberNotFoundException")
_CONFLICT = ("ADObjectAlreadyExistsException", "MemberAlreadyExistsException", "AlreadyExists")


@dataclass(frozen=True)
class OrgEwsSettings:
    """EWS switches of the organization: ``allowed`` is None when no allow list is set."""

    enabled: bool | None
    allowed: tuple[str, ...] | None


def parse_allowed(value: object) -> tuple[str, ...] | None:
    """EwsAllowedAppIDs as Exchange returns it: a comma-separated string or a JSON array."""
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(i).strip() for i in items if str(i).strip())


class ExchangeAdmin:
    """Cmdlets through the admin API, with an admin token for the Exchange resource."""

    def __init__(
        self,
        cloud: Cloud,
        credential: AsyncTokenCredential | None,
        tenant_id: str,
        *,
        deadline: Deadline,
        http_client: httpx.AsyncClient,
        on_progress: ProgressCallback | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cloud = cloud
        self.credential = credential
        self.tenant_id = tenant_id
        self.deadline = deadline
        self.http = http_client
        self.on_progress = on_progress
        self.rng = rng or random.Random()  # noqa: S311 - jitter
        self.requests = 0

    async def _headers(self) -> dict[str, str]:
        if self.credential is None:
            raise AuthenticationError("Exchange cmdlets need the admin identity; none was given")
        try:
            token = await self.credential.get_token(self.cloud.exchange_scope)
        except ClientAuthenticationError as exc:
            first = str(exc.message or exc).strip().splitlines()[0][:400]
            raise AuthenticationError(
                f"could not get an Exchange Online token for the admin identity: {first}"
            ) from None
        claims = jwt.decode(token.token, options={"verify_signature": False})
        if claims.get("idtyp") == "user" and claims.get("upn"):
            anchor = f"UPN:{claims['upn']}"
        else:
            anchor = f"APP:{SYSTEM_MAILBOX}@{self.tenant_id}"
        return {
            "Authorization": f"Bearer {token.token}",
            "X-AnchorMailbox": anchor,
            "X-ResponseFormat": "json",
            "Prefer": "odata.maxpagesize=1000",
            "client-request-id": str(uuid.uuid4()),
            "Accept": "application/json",
        }

    async def invoke(
        self, cmdlet: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Run a cmdlet; all pages of its output.

        Raises:
            NotFoundError, ConflictError: the cmdlet's own "not found" / "already exists".
            PermissionDeniedError: the admin lacks Exchange.ManageAsApp or an Exchange admin role.
            ThrottledError: Exchange kept throttling until the deadline.
        """
        body = {"CmdletInput": {"CmdletName": cmdlet, "Parameters": dict(parameters or {})}}
        url: str | None = self.cloud.admin_api_url(self.tenant_id)
        rows: list[dict[str, Any]] = []
        while url is not None:
            page = await self._post(cmdlet, url, body)
            rows.extend(page.get("value") or [])
            for warning in page.get("@adminapi.warnings") or []:
                log.info("%s: %s", cmdlet, warning)
            url = page.get("@odata.nextLink")
        return rows

    async def _post(self, cmdlet: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
        what = f"Exchange {cmdlet}"

        async def attempt() -> Ready[dict[str, Any]] | Pending:
            self.requests += 1
            try:
                response = await self.http.post(url, json=body, headers=await self._headers())
            except httpx.TransportError as exc:
                return Pending(f"no answer from Exchange Online ({exc.__class__.__name__})")
            if response.status_code == 429 or response.status_code >= 500:
                after = response.headers.get("Retry-After")
                return Pending(
                    f"Exchange Online answered {response.status_code}",
                    float(after) if after and after.isdigit() else None,
                )
            if response.status_code >= 400:
                raise self._error(what, response)
            data: dict[str, Any] = response.json()
            return Ready(data)

        try:
            return await poll(
                what, attempt, deadline=self.deadline, rng=self.rng, on_progress=self.on_progress
            )
        except PropagationTimeoutError as exc:
            raise ThrottledError(
                f"{what}: Exchange Online kept failing or throttling until the timeout; try again later",
                service="exchange",
            ) from exc

    def _error(self, what: str, response: httpx.Response) -> MimO365Error:
        status = response.status_code
        if status == 401:
            return AuthenticationError(f"{what}: Exchange Online rejected the admin token")
        if status == 403:
            return PermissionDeniedError(
                f"{what}: the admin identity may not run Exchange cmdlets; an app-only admin needs the Office 365 "
                "Exchange Online application permission Exchange.ManageAsApp (consented) and the Exchange "
                "Administrator role; a signed-in admin needs the Exchange Administrator role",
                missing=("Exchange.ManageAsApp", "Exchange Administrator"),
            )
        kind, text = "", response.text[:300]
        try:
            error = json.loads(response.content).get("error", {})
            inner = (error.get("innererror") or {}).get("internalexception") or {}
            kind = str(inner.get("type") or "")
            text = str(inner.get("message") or error.get("message") or text)
            if not kind and error.get("details"):
                raw = str(error["details"][0].get("message", ""))
                if raw.startswith("|"):
                    kind, _, text = raw[1:].partition("|")
        except (ValueError, AttributeError, IndexError):
            pass
        kw: dict[str, Any] = {
            "service": "exchange",
            "status_code": status,
            "error_code": kind.rsplit(".", 1)[-1] or None,
        }
        message = f"{what}: {text}"
        if any(k in kind for k in _NOT_FOUND):
            return NotFoundError(message, **kw)
        if any(k in kind for k in _CONFLICT):
            return ConflictError(message, **kw)
        return ServiceError(message, **kw)

    # --- reads and writes the flow uses ---------------------------------------------------

    async def recipient(self, identity: str) -> dict[str, Any] | None:
        """Get-Recipient; None when absent."""
        try:
            rows = await self.invoke("Get-Recipient", {"Identity": identity})
        except NotFoundError:
            return None
        return rows[0] if rows else None

    async def distribution_group(self, identity: str) -> dict[str, Any] | None:
        """Get-DistributionGroup; None when absent."""
        try:
            rows = await self.invoke("Get-DistributionGroup", {"Identity": identity})
        except NotFoundError:
            return None
        return rows[0] if rows else None

    async def new_security_group(self, name: str, notes: str) -> dict[str, Any]:
        """New-DistributionGroup -Type Security."""
        rows = await self.invoke(
            "New-DistributionGroup", {"Name": name, "Type": "Security", "Notes": notes}
        )
        return rows[0]

    async def group_members(self, identity: str) -> list[dict[str, Any]]:
        """Get-DistributionGroupMember."""
        return await self.invoke("Get-DistributionGroupMember", {"Identity": identity})

    async def add_group_member(self, identity: str, member: str) -> bool:
        """Add-DistributionGroupMember; False when it already was a member."""
        try:
            await self.invoke(
                "Add-DistributionGroupMember",
                {"Identity": identity, "Member": member, "BypassSecurityGroupManagerCheck": True},
            )
        except ConflictError:
            return False
        return True

    async def access_policies(self) -> list[dict[str, Any]]:
        """Get-ApplicationAccessPolicy."""
        return await self.invoke("Get-ApplicationAccessPolicy")

    async def new_access_policy(self, app_id: str, scope: str, description: str) -> dict[str, Any]:
        """New-ApplicationAccessPolicy -AccessRight RestrictAccess."""
        rows = await self.invoke(
            "New-ApplicationAccessPolicy",
            {
                "AppId": app_id,
                "PolicyScopeGroupId": scope,
                "AccessRight": "RestrictAccess",
                "Description": description,
            },
        )
        return rows[0]

    async def test_access_policy(self, mailbox: str, app_id: str) -> str:
        """Test-ApplicationAccessPolicy: ``Granted`` or ``Denied``."""
        rows = await self.invoke(
            "Test-ApplicationAccessPolicy", {"Identity": mailbox, "AppId": app_id}
        )
        return str(rows[0].get("AccessCheckResult")) if rows else "Unknown"

    async def mailboxes(self) -> list[dict[str, Any]]:
        """Get-Mailbox (all pages)."""
        return await self.invoke("Get-Mailbox", {"ResultSize": "Unlimited"})

    async def org_ews(self) -> OrgEwsSettings:
        """EwsEnabled and EwsAllowedAppIDs from Get-OrganizationConfig."""
        rows = await self.invoke(
            "Get-OrganizationConfig", {"RetrieveEwsOperationAccessPolicy": True}
        )
        org = rows[0] if rows else {}
        enabled = org.get("EwsEnabled")
        return OrgEwsSettings(
            enabled if isinstance(enabled, bool) else None,
            parse_allowed(org.get("EwsAllowedAppIDs")),
        )

    async def set_org_ews(
        self, *, enabled: bool | None = None, allowed: tuple[str, ...] | None = None
    ) -> None:
        """Set-OrganizationConfig; ``allowed`` replaces the whole list (callers merge first)."""
        params: dict[str, Any] = {}
        if enabled is not None:
            params["EwsEnabled"] = enabled
        if allowed is not None:
            params["EwsAllowedAppIDs"] = ",".join(allowed)
        await self.invoke("Set-OrganizationConfig", params)

    # --- RBAC for Applications ------------------------------------------------------------

    async def exo_service_principal(self, app_id: str) -> dict[str, Any] | None:
        """Get-ServicePrincipal for ``app_id``; None when Exchange has no pointer yet."""
        try:
            rows = await self.invoke("Get-ServicePrincipal", {"Identity": app_id})
        except NotFoundError:
            return None
        return rows[0] if rows else None

    async def new_exo_service_principal(
        self, app_id: str, object_id: str, display_name: str
    ) -> dict[str, Any]:
        """New-ServicePrincipal."""
        rows = await self.invoke(
            "New-ServicePrincipal",
            {"AppId": app_id, "ObjectId": object_id, "DisplayName": display_name},
        )
        return rows[0]

    async def role_assignments(self, app: str) -> list[dict[str, Any]]:
        """Get-ManagementRoleAssignment -App."""
        try:
            return await self.invoke("Get-ManagementRoleAssignment", {"App": app})
        except NotFoundError:
            return []

    async def new_role_assignment(
        self, app: str, role: str, group: str, name: str
    ) -> dict[str, Any]:
        """New-ManagementRoleAssignment -App -Role -RecipientGroupScope."""
        rows = await self.invoke(
            "New-ManagementRoleAssignment",
            {"App": app, "Role": role, "RecipientGroupScope": group, "Name": name},
        )
        return rows[0]

    # --- removal (unregister) ---------------------------------------------------------------
    # Each returns False when the object was already gone, so a rerun converges.

    async def _remove(self, cmdlet: str, parameters: Mapping[str, Any]) -> bool:
        try:
            await self.invoke(cmdlet, {**parameters, "Confirm": False})
        except NotFoundError:
            return False
        return True

    async def remove_access_policy(self, identity: str) -> bool:
        """Remove-ApplicationAccessPolicy."""
        return await self._remove("Remove-ApplicationAccessPolicy", {"Identity": identity})

    async def remove_group(self, identity: str) -> bool:
        """Remove-DistributionGroup (the caller is not the group's manager, hence the bypass)."""
        return await self._remove(
            "Remove-DistributionGroup",
            {"Identity": identity, "BypassSecurityGroupManagerCheck": True},
        )

    async def remove_group_member(self, identity: str, member: str) -> bool:
        """Remove-DistributionGroupMember; False when it was not a member."""
        return await self._remove(
            "Remove-DistributionGroupMember",
            {"Identity": identity, "Member": member, "BypassSecurityGroupManagerCheck": True},
        )

    async def role_assignments_for_role(self, role: str) -> list[dict[str, Any]]:
        """Get-ManagementRoleAssignment -Role: every app's assignments of one role."""
        try:
            return await self.invoke("Get-ManagementRoleAssignment", {"Role": role})
        except NotFoundError:
            return []

    async def remove_role_assignment(self, identity: str) -> bool:
        """Remove-ManagementRoleAssignment."""
        return await self._remove("Remove-ManagementRoleAssignment", {"Identity": identity})

    async def remove_exo_service_principal(self, identity: str) -> bool:
        """Remove-ServicePrincipal (Exchange's pointer, not the Entra service principal)."""
        return await self._remove("Remove-ServicePrincipal", {"Identity": identity})

    async def clear_org_ews_allowed(self) -> None:
        """Set-OrganizationConfig -EwsAllowedAppIDs $null (clears the list)."""
        await self.invoke("Set-OrganizationConfig", {"EwsAllowedAppIDs": None})
