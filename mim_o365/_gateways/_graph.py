"""The directory gateway: Entra ID through msgraph-sdk, with every library error translated.

Throttling (429), transient 5xx and dropped connections are retried here, through the injected
clock and within the caller's deadline; kiota's own retry handler (which sleeps on the real clock)
is left out of the middleware.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware import (
    HeadersInspectionHandler,
    ParametersNameDecodingHandler,
    RedirectHandler,
    UrlReplaceHandler,
    UserAgentHandler,
)
from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
    RemovePasswordPostRequestBody,
)
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.application import Application
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import PasswordCredential
from msgraph.generated.models.required_resource_access import RequiredResourceAccess
from msgraph.generated.models.resource_access import ResourceAccess
from msgraph.generated.models.service_principal import ServicePrincipal
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]

from mim_o365._clouds import Cloud
from mim_o365._errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    MimO365Error,
    NotFoundError,
    PermissionDeniedError,
    PropagationTimeoutError,
    ServiceError,
    ThrottledError,
    TransportError,
)
from mim_o365._retry import Deadline, Pending, ProgressCallback, Ready, poll
from mim_o365._secrets import Secret

log = logging.getLogger("mim_o365.graph")
T = TypeVar("T")

Access = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
"""requiredResourceAccess as nested tuples: ((resourceAppId, ((id, type), ...)), ...)."""


@dataclass(frozen=True)
class TenantInfo:
    """The organization."""

    id: str
    initial_domain: str
    display_name: str


@dataclass(frozen=True)
class UserInfo:
    """A directory user."""

    id: str
    user_principal_name: str
    mail: str | None


@dataclass(frozen=True)
class SecretInfo:
    """A client secret's metadata (never its value)."""

    key_id: str
    display_name: str | None
    hint: str | None
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class AppInfo:
    """An application registration."""

    id: str
    app_id: str
    display_name: str
    tags: tuple[str, ...]
    notes: str | None
    required_resource_access: Access
    secrets: tuple[SecretInfo, ...]


@dataclass(frozen=True)
class ServicePrincipalInfo:
    """A service principal and its app roles (value -> id)."""

    id: str
    app_id: str
    display_name: str
    app_roles: dict[str, str]


@dataclass(frozen=True)
class AssignmentInfo:
    """An app role assignment."""

    id: str
    app_role_id: str
    principal_id: str
    resource_id: str


def _access(model: Application) -> Access:
    out = []
    for rra in model.required_resource_access or []:
        items = tuple((str(ra.id), str(ra.type)) for ra in rra.resource_access or [])
        out.append((str(rra.resource_app_id), items))
    return tuple(out)


def _app_info(model: Application) -> AppInfo:
    return AppInfo(
        id=str(model.id),
        app_id=str(model.app_id),
        display_name=str(model.display_name or ""),
        tags=tuple(model.tags or ()),
        notes=model.notes,
        required_resource_access=_access(model),
        secrets=tuple(
            SecretInfo(str(p.key_id), p.display_name, p.hint, p.start_date_time, p.end_date_time)
            for p in model.password_credentials or []
        ),
    )


def _when(value: object) -> datetime | None:
    """An OData ``DateTimeOffset`` (``...Z``) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _app_info_json(data: dict[str, Any]) -> AppInfo:
    """An application from its Graph JSON (the fields ``applications_with_tag`` selects)."""
    access = tuple(
        (
            str(r.get("resourceAppId")),
            tuple((str(a.get("id")), str(a.get("type"))) for a in r.get("resourceAccess") or []),
        )
        for r in data.get("requiredResourceAccess") or []
    )
    return AppInfo(
        id=str(data.get("id")),
        app_id=str(data.get("appId")),
        display_name=str(data.get("displayName") or ""),
        tags=tuple(data.get("tags") or ()),
        notes=data.get("notes"),
        required_resource_access=access,
        secrets=tuple(
            SecretInfo(
                str(p.get("keyId")),
                p.get("displayName"),
                p.get("hint"),
                _when(p.get("startDateTime")),
                _when(p.get("endDateTime")),
            )
            for p in data.get("passwordCredentials") or []
        ),
    )


def _sp_info(model: ServicePrincipal) -> ServicePrincipalInfo:
    roles = {str(r.value): str(r.id) for r in model.app_roles or [] if r.value}
    return ServicePrincipalInfo(
        str(model.id), str(model.app_id), str(model.display_name or ""), roles
    )


def _odata_code(exc: ODataError) -> tuple[str, str, list[str]]:
    err = exc.error
    code = (err.code if err else None) or ""
    message = (err.message if err else None) or str(exc)
    details = [d.code for d in (err.details or [])] if err else []
    return code, message, [d for d in details if d]


def _header(exc: APIError, name: str) -> str | None:
    for key, value in (exc.response_headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def translate(exc: BaseException, what: str) -> MimO365Error:
    """Map a library error to the project's hierarchy (the caller raises it ``from`` ``exc``)."""
    if isinstance(exc, ClientAuthenticationError):
        first = str(exc.message or exc).strip().splitlines()[0][:400]
        if "authority configuration" in first:
            return AuthenticationError(
                f"{what}: the sign-in service does not know this tenant; check --tenant (a tenant id or "
                f"verified domain) and --cloud. Details: {first}"
            )
        return AuthenticationError(f"{what}: could not sign in as the admin identity: {first}")
    if isinstance(exc, httpx.TransportError):
        return TransportError(f"{what}: no answer from Microsoft Graph ({exc.__class__.__name__})")
    if not isinstance(exc, APIError):
        return ServiceError(f"{what}: {exc.__class__.__name__}", service="graph")
    status = exc.response_status_code or 0
    code, message, details = _odata_code(exc) if isinstance(exc, ODataError) else ("", str(exc), [])
    request_id = _header(exc, "request-id")
    kw: dict[str, Any] = {
        "service": "graph",
        "status_code": status,
        "error_code": code,
        "request_id": request_id,
    }
    text = f"{what}: {message} ({code or status})"
    if status == 401:
        return AuthenticationError(
            f"{what}: Microsoft Graph rejected the token: {message}", error_code=code
        )
    if status == 403:
        return PermissionDeniedError(
            f"{what}: the admin identity lacks a permission ({message}); grant it the Graph application "
            "permissions Application.ReadWrite.All and AppRoleAssignment.ReadWrite.All, or use an account "
            "with the Application Administrator (or Global Administrator) role"
        )
    if status == 429:
        after = _header(exc, "Retry-After")
        return ThrottledError(
            text, retry_after=float(after) if after and after.isdigit() else None, **kw
        )
    if status == 404 or "NoBackingApplicationObject" in details:
        return NotFoundError(text, **kw)
    if code == "CredentialInvalidLifetimeAsPerAppPolicy":
        return ConfigurationError(
            f"{what}: the tenant's app-management policy caps client secret lifetime: {message} "
            "Choose a shorter --secret-lifetime-days."
        )
    if code == "CredentialTypeNotAllowedAsPerAppPolicy":
        return ConfigurationError(
            f"{what}: the tenant's app-management policy forbids client secrets: {message}"
        )
    if status == 409:
        return ConflictError(text, **kw)
    return ServiceError(text, **kw)


def _transient(err: MimO365Error) -> bool:
    return isinstance(err, ThrottledError | TransportError) or (
        isinstance(err, ServiceError) and (err.status_code or 0) >= 500
    )


def build_graph_client(
    cloud: Cloud, credential: Any, http_client: httpx.AsyncClient
) -> GraphServiceClient:
    """msgraph-sdk for ``cloud`` on ``http_client`` (which it takes over), with explicit scopes.

    The middleware is kiota's default minus its RetryHandler, which sleeps on the real clock;
    :class:`GraphDirectory` retries through the injected clock instead.
    """
    auth = AzureIdentityAuthenticationProvider(
        credential,
        scopes=[cloud.graph_scope],
        allowed_hosts=[urlsplit(cloud.graph_endpoint).hostname or ""],
    )
    middleware = [
        RedirectHandler(),
        ParametersNameDecodingHandler(),
        UrlReplaceHandler(),
        UserAgentHandler(),
        HeadersInspectionHandler(),
    ]
    client = GraphClientFactory.create_with_custom_middleware(
        middleware=middleware, client=http_client
    )
    client.base_url = cloud.graph_base_url
    adapter = GraphRequestAdapter(auth, client=client)
    adapter.base_url = cloud.graph_base_url
    return GraphServiceClient(request_adapter=adapter)


class GraphDirectory:
    """Entra ID operations used by mim-o365, on msgraph-sdk, bounded by one deadline.

    Args:
        graph: from :func:`build_graph_client`.
        deadline: bounds every retry.
    """

    def __init__(
        self,
        graph: GraphServiceClient,
        *,
        deadline: Deadline,
        on_progress: ProgressCallback | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.graph = graph
        self.deadline = deadline
        self.on_progress = on_progress
        self.rng = rng or random.Random()  # noqa: S311 - jitter
        self.requests = 0

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """One Graph call, retried on throttling and transient failures within the deadline."""

        async def attempt() -> Ready[T] | Pending:
            self.requests += 1
            try:
                return Ready(await fn())
            except (APIError, httpx.TransportError, ClientAuthenticationError) as exc:
                err = translate(exc, what)
                if not _transient(err):
                    raise err from exc
                retry_after = err.retry_after if isinstance(err, ThrottledError) else None
                return Pending(str(err).split(": ", 1)[-1], retry_after)

        try:
            return await poll(
                what, attempt, deadline=self.deadline, rng=self.rng, on_progress=self.on_progress
            )
        except PropagationTimeoutError as exc:
            raise ThrottledError(
                f"{what}: Microsoft Graph kept failing or throttling until the timeout; try again later",
                service="graph",
            ) from exc

    async def _maybe(self, what: str, fn: Callable[[], Awaitable[T]]) -> T | None:
        try:
            return await self._call(what, fn)
        except NotFoundError:
            return None

    # --- reads --------------------------------------------------------------------------------

    async def organization(self) -> TenantInfo:
        """The tenant and its initial domain."""
        page = await self._call("reading the organization", lambda: self.graph.organization.get())
        orgs = page.value if page and page.value else []
        if not orgs:
            raise ServiceError(
                "reading the organization: Graph returned no organization", service="graph"
            )
        org = orgs[0]
        initial = next((d.name for d in org.verified_domains or [] if d.is_initial), None)
        return TenantInfo(str(org.id), str(initial or ""), str(org.display_name or ""))

    async def user(self, address: str) -> UserInfo | None:
        """A user by UPN or object id; None when absent."""
        found = await self._maybe(
            f"looking up {address}", lambda: self.graph.users.by_user_id(address).get()
        )
        if found is None:
            return None
        return UserInfo(str(found.id), str(found.user_principal_name), found.mail)

    async def service_principal(self, app_id: str) -> ServicePrincipalInfo | None:
        """The service principal of ``app_id``; None when absent (or not yet replicated)."""
        found = await self._maybe(
            f"reading the service principal of {app_id}",
            lambda: self.graph.service_principals_with_app_id(app_id).get(),
        )
        return _sp_info(found) if found is not None else None

    async def application_by_app_id(self, app_id: str) -> AppInfo | None:
        """An application by client id; None when absent."""
        found = await self._maybe(
            f"reading application {app_id}",
            lambda: self.graph.applications_with_app_id(app_id).get(),
        )
        return _app_info(found) if found is not None else None

    async def application(self, object_id: str) -> AppInfo | None:
        """An application by object id; None when absent (or not yet replicated)."""
        found = await self._maybe(
            f"reading application object {object_id}",
            lambda: self.graph.applications.by_application_id(object_id).get(),
        )
        return _app_info(found) if found is not None else None

    async def applications_tagged(self, tag: str) -> list[AppInfo]:
        """Every application carrying ``tag`` (all pages)."""
        escaped = tag.replace("'", "''")
        query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            filter=f"tags/any(t:t eq '{escaped}')",
            top=999,
            select=[
                "id",
                "appId",
                "displayName",
                "tags",
                "notes",
                "requiredResourceAccess",
                "passwordCredentials",
            ],
        )
        config = RequestConfiguration(query_parameters=query)
        page = await self._call(
            "searching applications",
            lambda: self.graph.applications.get(request_configuration=config),
        )
        apps: list[AppInfo] = []
        while page is not None:
            apps.extend(_app_info(a) for a in page.value or [])
            link = page.odata_next_link
            if not link:
                break
            page = await self._call("searching applications", self._next_page(link))
        return apps

    def _next_page(self, link: str) -> Callable[[], Awaitable[Any]]:
        return lambda: self.graph.applications.with_url(link).get()

    async def app_role_assignments(self, principal_id: str) -> list[AssignmentInfo]:
        """App role assignments held by a service principal."""
        page = await self._call(
            "reading granted permissions",
            lambda: self.graph.service_principals.by_service_principal_id(
                principal_id
            ).app_role_assignments.get(),
        )
        return [
            AssignmentInfo(str(a.id), str(a.app_role_id), str(a.principal_id), str(a.resource_id))
            for a in (page.value if page and page.value else [])
        ]

    # --- writes -------------------------------------------------------------------------------

    async def create_application(
        self, display_name: str, access: Access, tags: list[str], notes: str
    ) -> AppInfo:
        """POST /applications (single tenant)."""
        body = Application(
            display_name=display_name,
            sign_in_audience="AzureADMyOrg",
            tags=tags,
            notes=notes,
            required_resource_access=_rra_models(access),
        )
        created = await self._call(
            "creating the application", lambda: self.graph.applications.post(body)
        )
        if created is None:
            raise ServiceError(
                "creating the application: Graph returned no object", service="graph"
            )
        return _app_info(created)

    async def update_application(
        self, object_id: str, *, access: Access | None = None, tags: list[str] | None = None
    ) -> None:
        """PATCH /applications/{id}: sent collections replace the old value whole."""
        body = Application()
        if access is not None:
            body.required_resource_access = _rra_models(access)
        if tags is not None:
            body.tags = tags
        await self._call(
            "updating the application",
            lambda: self.graph.applications.by_application_id(object_id).patch(body),
        )

    async def create_service_principal(self, app_id: str) -> ServicePrincipalInfo:
        """POST /servicePrincipals; NotFoundError while the application has not replicated."""
        created = await self._call(
            "creating the service principal",
            lambda: self.graph.service_principals.post(ServicePrincipal(app_id=app_id)),
        )
        if created is None:
            raise ServiceError(
                "creating the service principal: Graph returned no object", service="graph"
            )
        return _sp_info(created)

    async def assign_app_role(self, resource_id: str, principal_id: str, app_role_id: str) -> bool:
        """Grant an application permission (admin consent). False when it was already granted."""
        body = AppRoleAssignment(
            principal_id=UUID(principal_id),
            resource_id=UUID(resource_id),
            app_role_id=UUID(app_role_id),
        )
        try:
            await self._call(
                "granting admin consent",
                lambda: self.graph.service_principals.by_service_principal_id(
                    resource_id
                ).app_role_assigned_to.post(body),
            )
        except ServiceError as err:
            if err.status_code == 400 and "already exists" in str(err):
                return False
            raise
        return True

    async def remove_app_role_assignment(self, resource_id: str, assignment_id: str) -> None:
        """Revoke an application permission (DELETE .../appRoleAssignedTo/{id})."""
        await self._call(
            "removing a granted permission",
            lambda: (
                self.graph.service_principals.by_service_principal_id(resource_id)
                .app_role_assigned_to.by_app_role_assignment_id(assignment_id)
                .delete()
            ),
        )

    async def add_password(
        self, object_id: str, display_name: str, end: datetime
    ) -> tuple[SecretInfo, Secret]:
        """Mint a client secret; its text is returned once, wrapped."""
        body = AddPasswordPostRequestBody(
            password_credential=PasswordCredential(display_name=display_name, end_date_time=end)
        )
        created = await self._call(
            "creating the client secret",
            lambda: self.graph.applications.by_application_id(object_id).add_password.post(body),
        )
        if created is None or not created.secret_text:
            raise ServiceError(
                "creating the client secret: Graph returned no secret", service="graph"
            )
        info = SecretInfo(
            str(created.key_id),
            created.display_name,
            created.hint,
            created.start_date_time,
            created.end_date_time,
        )
        return info, Secret(created.secret_text)

    async def remove_password(self, object_id: str, key_id: str) -> None:
        """Remove a client secret."""
        from uuid import UUID

        body = RemovePasswordPostRequestBody(key_id=UUID(key_id))
        await self._call(
            "removing a client secret",
            lambda: self.graph.applications.by_application_id(object_id).remove_password.post(body),
        )

    # --- removal and lifecycle reads (status, unregister) -------------------------------------

    async def delete_application(self, object_id: str) -> bool:
        """DELETE /applications/{id}: the application goes to deleted items (restorable for 30
        days) and its service principal with it. False when it was already gone."""
        try:
            await self._call(
                "deleting the application",
                lambda: self.graph.applications.by_application_id(object_id).delete(),
            )
        except NotFoundError:
            return False
        return True

    async def delete_service_principal(self, object_id: str) -> bool:
        """DELETE /servicePrincipals/{id} (its app role assignments go with it). False when it
        was already gone."""
        try:
            await self._call(
                "deleting the service principal",
                lambda: self.graph.service_principals.by_service_principal_id(object_id).delete(),
            )
        except NotFoundError:
            return False
        return True

    async def applications_with_tag(self, tag: str) -> list[AppInfo]:
        """Every application carrying ``tag``: one query, 999 a page, following
        ``@odata.nextLink``; the same objects as :meth:`applications_tagged`, faster.

        The pages go through msgraph-sdk's request adapter (authentication, middleware, OData
        errors) but are read as JSON here: its model deserializer spends about 5 ms on each
        application, 10 s for a fleet of 2,000, against well under 1 ms for the JSON itself.
        """
        escaped = tag.replace("'", "''")
        query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            filter=f"tags/any(t:t eq '{escaped}')",
            top=999,
            select=[
                "id",
                "appId",
                "displayName",
                "tags",
                "notes",
                "requiredResourceAccess",
                "passwordCredentials",
            ],
        )
        first = self.graph.applications.to_get_request_information(
            RequestConfiguration(query_parameters=query)
        )
        apps: list[AppInfo] = []
        info = first
        while True:
            raw = await self._call("searching applications", self._raw(info))
            page: dict[str, Any] = json.loads(raw) if raw else {}
            apps.extend(_app_info_json(a) for a in page.get("value") or [])
            link = page.get("@odata.nextLink")
            if not link:
                return apps
            info = self.graph.applications.with_url(str(link)).to_get_request_information()

    def _raw(self, info: RequestInformation) -> Callable[[], Awaitable[bytes | None]]:
        """A request whose answer is the body, unparsed (errors still come as ODataError)."""
        adapter = self.graph.request_adapter

        async def fetch() -> bytes | None:
            raw: Any = await adapter.send_primitive_async(info, "bytes", {"XXX": ODataError})
            return raw if isinstance(raw, bytes) else None

        return fetch

    async def group_description(self, object_id: str) -> str | None:
        """The ``description`` of a directory group (for a group made in Exchange, the notes it
        was created with); None when the group or its description is absent."""
        found = await self._maybe(
            f"reading group {object_id}",
            lambda: self.graph.groups.by_group_id(object_id).get(),
        )
        return found.description if found is not None else None


def _rra_models(access: Access) -> list[RequiredResourceAccess]:
    from uuid import UUID

    return [
        RequiredResourceAccess(
            resource_app_id=resource,
            resource_access=[ResourceAccess(id=UUID(i), type=t) for i, t in items],
        )
        for resource, items in access
    ]
