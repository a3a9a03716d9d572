"""The registration flow (steps 1-5 and 9): resolve, find or create, permissions, consent, secret.

Each step that meets replication lag polls its own condition; the service principal and consent
chain runs beside the secret chain, so neither waits for the other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from mim_o365._clock import Clock
from mim_o365._clouds import Cloud
from mim_o365._errors import (
    ConfigurationError,
    MimO365Error,
    NotFoundError,
    PermissionDeniedError,
    PlanConflictError,
    ServiceError,
)
from mim_o365._exchange_steps import (
    EWS_ROLE,
    ExchangeResult,
    ensure_allow_listed,
    policy_group_name,
    scope_with_policy,
    scope_with_rbac,
)
from mim_o365._gateways._exchange import ExchangeAdmin
from mim_o365._gateways._graph import AppInfo, GraphDirectory, SecretInfo, ServicePrincipalInfo
from mim_o365._gateways._identity import TokenProbe
from mim_o365._plan import (
    DEFAULT_DISPLAY_NAME,
    SECRET_NAME_PREFIX,
    check_lifetime,
    check_mailbox,
    desired_access,
    mailbox_tag,
    managed_tags,
    secret_is_ours,
)
from mim_o365._retry import Deadline, Pending, ProgressCallback, Ready, poll
from mim_o365._secrets import Secret
from mim_o365._sinks import SecretSink
from mim_o365._verify import Verification, verify_until_ok
from mim_o365._wellknown import EXCHANGE_APP_ID, FULL_ACCESS_AS_APP, FULL_ACCESS_AS_APP_ID

log = logging.getLogger("mim_o365")


@dataclass(frozen=True)
class Registration:
    """What ``register`` left in the tenant. ``client_secret`` is set only when it was minted this
    run and no sink took it; its repr is redacted."""

    application_id: str
    object_id: str | None
    service_principal_id: str | None
    tenant_id: str
    tenant_domain: str
    mailbox: str
    cloud: str
    display_name: str
    client_secret: Secret | None = None
    secret_key_id: str | None = None
    secret_expires_at: datetime | None = None
    secret_destination: str | None = None
    consent: str = "granted"
    admin_consent_url: str | None = None
    token_has_role: bool | None = None
    created: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    existing_secrets: tuple[SecretInfo, ...] = ()
    plan: tuple[str, ...] = ()
    dry_run: bool = False
    scope: str = "policy"
    access_policy: dict[str, Any] | None = None
    ews_allow_listed: bool | None = None
    ews_problem: str | None = None
    verified: bool | None = None
    verification: Verification | None = None

    def as_dict(self, *, reveal_secret: bool = False) -> dict[str, Any]:
        """JSON-ready fields; the secret only with ``reveal_secret``."""
        return {
            "application_id": self.application_id,
            "tenant_id": self.tenant_id,
            "client_secret": self.client_secret.reveal()
            if (reveal_secret and self.client_secret)
            else None,
            "secret_key_id": self.secret_key_id,
            "secret_expires_at": self.secret_expires_at.isoformat()
            if self.secret_expires_at
            else None,
            "secret_destination": self.secret_destination,
            "object_id": self.object_id,
            "service_principal_id": self.service_principal_id,
            "mailbox": self.mailbox,
            "cloud": self.cloud,
            "display_name": self.display_name,
            "tenant_domain": self.tenant_domain,
            "consent": self.consent,
            "admin_consent_url": self.admin_consent_url,
            "token_has_role": self.token_has_role,
            "created": list(self.created),
            "changed": list(self.changed),
            "existing_secrets": [
                {
                    "key_id": s.key_id,
                    "display_name": s.display_name,
                    "hint": s.hint,
                    "expires_at": s.end.isoformat() if s.end else None,
                }
                for s in self.existing_secrets
            ],
            "plan": list(self.plan),
            "dry_run": self.dry_run,
            "scope": self.scope,
            "access_policy": self.access_policy,
            "ews_allow_listed": self.ews_allow_listed,
            "ews_problem": self.ews_problem,
            "verified": self.verified,
            "verification": self.verification.as_dict() if self.verification else None,
        }


@dataclass
class _Run:
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    sp: ServicePrincipalInfo | None = None
    consent: str = "granted"
    consent_url: str | None = None
    secret: Secret | None = None
    secret_info: SecretInfo | None = None
    delivered_to: str | None = None


async def register(
    *,
    directory: GraphDirectory,
    probe: TokenProbe,
    cloud: Cloud,
    clock: Clock,
    deadline: Deadline,
    mailbox: str,
    display_name: str = DEFAULT_DISPLAY_NAME,
    app_id: str | None = None,
    secret_lifetime_days: int = 180,
    new_secret: bool = False,
    sink: SecretSink | None = None,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
    exchange: ExchangeAdmin | None = None,
    scope: str = "policy",
    policy_group: str | None = None,
    allow_list: bool = True,
    enable_ews: bool = False,
    verify: bool = True,
    transport: httpx.BaseTransport | None = None,
) -> Registration:
    """Find or create the MIM mailbox application and bring it to the desired state."""
    if scope not in ("policy", "rbac", "none"):
        raise ConfigurationError(f"--scope {scope!r}: choose policy, rbac or none")
    if exchange is None and (scope != "none" or allow_list):
        raise ConfigurationError(
            "the Exchange steps need an Exchange admin gateway; turn them off with "
            "scope='none' and allow_list=False"
        )
    mailbox = check_mailbox(mailbox)
    check_lifetime(secret_lifetime_days)
    if sink is not None:
        sink.check()
    say: Callable[[str], None] = (
        (lambda m: on_progress(m, deadline.elapsed)) if on_progress else (lambda m: None)
    )

    tenant = await directory.organization()
    if exchange is not None:
        exchange.tenant_id = tenant.id
    user = await directory.user(mailbox)
    if user is None:
        raise ConfigurationError(
            f"mailbox {mailbox} was not found in tenant {tenant.initial_domain}; check the address "
            f"(the MIM Service mailbox, e.g. MIMService@{tenant.initial_domain}). Nothing was changed."
        )
    if not user.mail:
        raise ConfigurationError(
            f"{mailbox} exists in {tenant.initial_domain} but has no mailbox (no mail address); "
            "MIM Service needs a licensed Exchange Online mailbox. Nothing was changed."
        )
    exo = await directory.service_principal(EXCHANGE_APP_ID)
    if exo is None:
        raise ConfigurationError(
            f"tenant {tenant.initial_domain} has no Office 365 Exchange Online service principal "
            f"({EXCHANGE_APP_ID}); Exchange Online must be provisioned first. Nothing was changed."
        )
    role_id = exo.app_roles.get(FULL_ACCESS_AS_APP)
    if role_id is None:
        raise ConfigurationError(
            f"the Exchange Online service principal offers no {FULL_ACCESS_AS_APP} role"
        )
    if role_id.lower() != FULL_ACCESS_AS_APP_ID:
        log.warning(
            "%s has id %s in this tenant (documented: %s); using the tenant's",
            FULL_ACCESS_AS_APP,
            role_id,
            FULL_ACCESS_AS_APP_ID,
        )

    app: AppInfo | None
    adopted = app_id is not None
    if app_id is not None:
        app = await directory.application_by_app_id(app_id)
        if app is None:
            raise ConfigurationError(
                f"--app-id {app_id}: no such application in {tenant.initial_domain}"
            )
    else:
        found = await directory.applications_tagged(mailbox_tag(mailbox))
        if len(found) > 1:
            ids = ", ".join(a.app_id for a in found)
            raise PlanConflictError(
                f"{len(found)} applications are registered for {mailbox} ({ids}); keep one and pass it with --app-id, "
                "or remove the others with `mim-o365 unregister`"
            )
        app = found[0] if found else None
        adopted = bool(app and "mim-o365:adopted" in app.tags)

    rbac = scope == "rbac"
    access = desired_access(
        app.required_resource_access if app else (), role_id, tenant_wide=not rbac
    )
    tags = managed_tags(app.tags if app else (), mailbox, adopted=adopted)
    existing = tuple(s for s in (app.secrets if app else ()) if secret_is_ours(s.display_name))
    mint = new_secret or not existing or (app is not None and not app.secrets)
    sp = await directory.service_principal(app.app_id) if app else None
    consents = []
    if sp is not None:
        consents = [
            a
            for a in await directory.app_role_assignments(sp.id)
            if a.app_role_id == role_id and a.resource_id == exo.id
        ]
    has_consent = bool(consents)

    plan = []
    if app is None:
        plan.append(f"create application '{display_name}' (single tenant) tagged for {mailbox}")
    else:
        if access != app.required_resource_access:
            plan.append(
                "set requiredResourceAccess: remove Microsoft Graph User.Read, add Exchange full_access_as_app"
            )
        if tags != list(app.tags):
            plan.append("tag the application as managed by mim-o365")
    if sp is None:
        plan.append("create the service principal")
    if not has_consent and not rbac:
        plan.append(f"grant admin consent for {FULL_ACCESS_AS_APP}")
    if has_consent and rbac:
        plan.append(
            f"remove the tenant-wide {FULL_ACCESS_AS_APP} consent (RBAC for Applications scopes access)"
        )
    group_name = policy_group or policy_group_name(app.app_id if app else "<new app id>")
    if scope == "policy":
        plan.append(
            f"restrict the app to {mailbox} with group '{group_name}' and a RestrictAccess policy"
        )
    elif rbac:
        plan.append(
            f"grant '{EWS_ROLE}' through RBAC for Applications scoped to group '{group_name}'"
        )
    if allow_list:
        plan.append(
            "make sure the app is on the organization's EwsAllowedAppIDs"
            + (" and set EwsEnabled=$true" if enable_ews else "")
        )
    if mint:
        plan.append(f"create a client secret valid {secret_lifetime_days} days")
    common: dict[str, Any] = {
        "tenant_id": tenant.id,
        "tenant_domain": tenant.initial_domain,
        "mailbox": mailbox,
        "cloud": cloud.name,
    }
    if dry_run:
        return Registration(
            application_id=app.app_id if app else "",
            object_id=app.id if app else None,
            service_principal_id=sp.id if sp else None,
            display_name=app.display_name if app else display_name,
            plan=tuple(plan),
            dry_run=True,
            existing_secrets=existing,
            consent="granted" if has_consent else "missing",
            scope=scope,
            **common,
        )

    run = _Run(sp=sp)
    if rbac:
        run.consent = "rbac"
    sp_ready = asyncio.Event()
    ex = ExchangeResult()
    if app is None:
        app = await directory.create_application(
            display_name, access, tags, f"Managed by mim-o365 for MIM Service mailbox {mailbox}."
        )
        run.created.append("application")
        say(f"created application {app.app_id}")
    else:
        if access != app.required_resource_access or tags != list(app.tags):
            target = app

            async def patch() -> Ready[None] | Pending:
                try:
                    await directory.update_application(
                        target.id,
                        access=access if access != target.required_resource_access else None,
                        tags=tags if tags != list(target.tags) else None,
                    )
                except NotFoundError:
                    return Pending("the application has not replicated yet")
                return Ready(None)

            await poll("the application update", patch, deadline=deadline, on_progress=on_progress)
            run.changed.append(
                "requiredResourceAccess" if access != app.required_resource_access else "tags"
            )
    current = app

    async def principal_and_consent() -> None:
        try:
            await _principal_and_consent()
        finally:
            sp_ready.set()

    async def _principal_and_consent() -> None:
        if run.sp is None:

            async def create_sp() -> Ready[ServicePrincipalInfo] | Pending:
                existing_sp = await directory.service_principal(current.app_id)
                if existing_sp is not None:
                    return Ready(existing_sp)
                try:
                    created = await directory.create_service_principal(current.app_id)
                except NotFoundError:
                    return Pending("the application has not replicated yet")
                run.created.append("service principal")
                return Ready(created)

            run.sp = await poll(
                "the service principal", create_sp, deadline=deadline, on_progress=on_progress
            )
        sp_ready.set()
        if rbac:
            for grant in consents:  # tenant-wide consent would undo the RBAC scoping
                await directory.remove_app_role_assignment(exo.id, grant.id)
                run.changed.append(f"removed tenant-wide {FULL_ACCESS_AS_APP} consent")
            return
        if has_consent:
            return
        sp_id = run.sp.id

        async def consent() -> Ready[bool] | Pending:
            try:
                return Ready(await directory.assign_app_role(exo.id, sp_id, role_id))
            except NotFoundError:
                return Pending("the service principal has not replicated yet")
            except ServiceError as err:
                if err.status_code == 400 and "not found on application" in str(err):
                    return Pending("the service principal has not replicated yet")
                raise

        try:
            if await poll("admin consent", consent, deadline=deadline, on_progress=on_progress):
                run.created.append("admin consent")
        except PermissionDeniedError as err:
            run.consent = "pending"
            run.consent_url = cloud.admin_consent_url(tenant.id, current.app_id)
            log.warning("admin consent could not be granted: %s", err)
            say(
                "the admin identity cannot grant admin consent: an app-only admin needs the Microsoft Graph "
                "application permissions AppRoleAssignment.ReadWrite.All and Application.Read.All; a signed-in "
                "admin needs the Global Administrator or Privileged Role Administrator role. A Global "
                f"Administrator can grant it in a browser instead: {run.consent_url}"
            )

    async def secret() -> None:
        if not mint:
            return
        end = clock.now() + timedelta(days=secret_lifetime_days)
        name = f"{SECRET_NAME_PREFIX} {clock.now():%Y-%m-%d}"

        async def add() -> Ready[tuple[SecretInfo, Secret]] | Pending:
            try:
                return Ready(await directory.add_password(current.id, name, end))
            except NotFoundError:
                return Pending("the application has not replicated yet")

        info, value = await poll(
            "the client secret", add, deadline=deadline, on_progress=on_progress
        )
        run.secret_info, run.secret = info, value
        run.created.append("client secret")
        if sink is None:
            return
        try:
            await asyncio.to_thread(
                sink.deliver,
                value,
                {
                    "application_id": current.app_id,
                    "tenant_id": tenant.id,
                    "expires_at": info.end.isoformat() if info.end else "",
                    "key_id": info.key_id,
                },
            )
        except Exception as exc:  # noqa: BLE001 - any failure to deliver means: take the secret back
            await remove_undelivered_secret(directory, current.id, info.key_id)
            run.secret = None
            raise ConfigurationError(
                f"could not deliver the new client secret to {sink.description} ({exc.__class__.__name__}: "
                f"{exc.strerror if isinstance(exc, OSError) else 'delivery failed'}); it was removed from the "
                "application again, nothing is lost. Fix the destination and run again."
            ) from None
        run.delivered_to = sink.description

    async def exchange_steps() -> None:
        if exchange is None:
            return
        name = policy_group or policy_group_name(current.app_id)
        if scope == "policy":
            await scope_with_policy(exchange, current.app_id, mailbox, name, ex)
        elif rbac:
            await sp_ready.wait()
            if run.sp is not None:
                await scope_with_rbac(
                    exchange, current.app_id, run.sp.id, current.display_name, mailbox, name, ex
                )
        if allow_list:
            await ensure_allow_listed(exchange, current.app_id, enable_ews=enable_ews, out=ex)

    outcomes = await asyncio.gather(
        principal_and_consent(), secret(), exchange_steps(), return_exceptions=True
    )
    failure = next((o for o in outcomes if isinstance(o, BaseException)), None)
    if failure is None and run.secret is not None and run.consent in ("granted", "rbac"):
        secret_value = run.secret

        async def token_role() -> Ready[bool] | Pending:
            got = await probe.roles(current.app_id, secret_value, cloud.exchange_scope)
            if isinstance(got, Pending):
                return got
            if rbac:
                return Ready(True)
            if FULL_ACCESS_AS_APP not in got.value:
                return Pending("admin consent has not reached new tokens yet")
            return Ready(True)

        try:
            await poll(
                "the new secret to yield an Exchange token with full_access_as_app",
                token_role,
                deadline=deadline,
                on_progress=on_progress,
            )
        except MimO365Error as exc:
            failure = exc
    if failure is not None:
        if run.secret is not None and run.secret_info is not None and run.delivered_to is None:
            # Nowhere safe holds the secret yet: remove it, the next run mints a new one.
            await remove_undelivered_secret(directory, current.id, run.secret_info.key_id)
        raise failure
    verification: Verification | None = None
    if verify and run.secret is not None and not ex.ews_problem and run.consent != "pending":
        verification = await verify_until_ok(
            probe=probe,
            cloud=cloud,
            tenant_id=tenant.id,
            app_id=current.app_id,
            secret=run.secret,
            mailbox=mailbox,
            admin=exchange,
            rbac=rbac,
            transport=transport,
            deadline=deadline,
            on_progress=on_progress,
        )
    return Registration(
        application_id=current.app_id,
        object_id=current.id,
        service_principal_id=run.sp.id if run.sp else None,
        display_name=current.display_name,
        client_secret=run.secret if run.delivered_to is None else None,
        secret_key_id=run.secret_info.key_id if run.secret_info else None,
        secret_expires_at=run.secret_info.end if run.secret_info else None,
        secret_destination=run.delivered_to,
        consent=run.consent,
        admin_consent_url=run.consent_url,
        token_has_role=True if (run.secret is not None and run.consent == "granted") else None,
        created=tuple(run.created + ex.created),
        changed=tuple(run.changed + ex.changed),
        existing_secrets=existing,
        plan=tuple(plan),
        scope=scope,
        access_policy=ex.scope,
        ews_allow_listed=ex.allow_listed,
        ews_problem=ex.ews_problem,
        verified=verification.ok if verification else None,
        verification=verification,
        **common,
    )


async def remove_undelivered_secret(directory: GraphDirectory, object_id: str, key_id: str) -> None:
    """Take back a secret nobody received (register and rotate both do this)."""
    try:
        await directory.remove_password(object_id, key_id)
    except MimO365Error:
        log.error(
            "the new client secret %s could not be removed again; remove it in the portal", key_id
        )
        raise
