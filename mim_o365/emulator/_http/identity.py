"""Microsoft identity platform (v2.0 endpoints) as MSAL and azure-identity call it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from mim_o365._wellknown import GRAPH_APP_ID
from mim_o365.emulator._http._common import JSON, base_url, json_response
from mim_o365.emulator._knobs import seen

if TYPE_CHECKING:
    from mim_o365.emulator._emulator import Emulator
    from mim_o365.emulator._models import ServicePrincipal

RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})
_DNS_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)
_GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

MESSAGES = {
    700016: (
        "unauthorized_client",
        400,
        "Application with identifier '{app}' was not found in the directory '{tenant}'. This can "
        "happen if the application has not been installed by the administrator of the tenant or "
        "consented to by any user in the tenant. You may have sent your authentication request to "
        "the wrong tenant.",
    ),
    7000229: (
        "invalid_client",
        401,
        "The client application {app} is missing service principal in the tenant {tenant}.",
    ),
    7000112: (
        "unauthorized_client",
        400,
        "Application '{app}'({name}) is disabled.",
    ),
    7000215: (
        "invalid_client",
        401,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app '{app}'.",
    ),
    7000222: (
        "invalid_client",
        401,
        "The provided client secret keys for app '{app}' are expired. Visit the Azure portal to "
        "create new keys for your app or consider using certificate credentials for added security.",
    ),
    7000218: (
        "invalid_client",
        401,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ),
    90002: (
        "invalid_request",
        400,
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
        "signing into the correct cloud. Check with your subscription administrator, this may "
        "happen if there are no active subscriptions for the tenant.",
    ),
    900023: (
        "invalid_request",
        400,
        "Specified tenant identifier '{tenant}' is neither a valid DNS name, nor a valid external domain.",
    ),
    500011: (
        "invalid_resource",
        400,
        "The resource principal named {resource} was not found in the tenant named {tenant}. This "
        "can happen if the application has not been installed by the administrator of the tenant "
        "or consented to by any user in the tenant. You might have sent your authentication "
        "request to the wrong tenant.",
    ),
    1002012: (
        "invalid_scope",
        400,
        "The provided value for scope {scope} is not valid. Client credential flows must have a "
        "scope value with /.default suffixed to the resource identifier (application ID URI).",
    ),
    70011: (
        "invalid_scope",
        400,
        "The provided request must include a 'scope' input parameter. The provided value for the "
        "input parameter 'scope' is not valid.",
    ),
    9001023: (
        "invalid_request",
        400,
        "The grant type is not supported over the /common or /consumers endpoints. Please use "
        "the /organizations or tenant-specific endpoint.",
    ),
    70003: (
        "unsupported_grant_type",
        400,
        "The app requested an unsupported grant type '{grant}'.",
    ),
    900144: (
        "invalid_request",
        400,
        "The request body must contain the following parameter: '{param}'.",
    ),
    70000: ("invalid_grant", 400, "Provided grant is invalid or malformed."),
    70008: (
        "invalid_grant",
        400,
        "The provided authorization code or refresh token has expired due to inactivity.",
    ),
    70016: (
        "authorization_pending",
        400,
        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    ),
}


class Identity:
    """The identity platform surface of an :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator
        self._device_flows: dict[str, dict[str, Any]] = {}
        self._refresh_tokens: dict[str, dict[str, Any]] = {}

    # --- helpers ------------------------------------------------------------------------------

    def _error(self, request: httpx.Request, code: int, **fmt: str) -> httpx.Response:
        error, status, text = MESSAGES[code]
        now = self.em.clock.now()
        trace = self.em.ids.guid()
        corr = request.headers.get("client-request-id") or self.em.ids.guid()
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        message = text.format_map(
            {
                "app": "",
                "name": "",
                "tenant": "",
                "resource": "",
                "scope": "",
                "grant": "",
                "param": "",
                **fmt,
            }
        )
        body = {
            "error": error,
            "error_description": f"AADSTS{code}: {message}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {stamp}",
            "error_codes": [code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": f"{base_url(request)}/error?code={code}",
        }
        return json_response(
            status, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
        )

    def tenant_status(self, tenant: str) -> int | None:
        """None when ``tenant`` names this tenant; else the AADSTS code to answer."""
        t = self.em.directory.state.tenant
        if tenant.lower() in (t.id, t.initial_domain.lower()):
            return None
        if _GUID_RE.match(tenant) or _DNS_RE.match(tenant):
            return 90002
        return 900023

    # --- discovery ----------------------------------------------------------------------------

    def openid_configuration(self, request: httpx.Request, tenant: str) -> httpx.Response:
        """GET /{tenant}/v2.0/.well-known/openid-configuration."""
        base = base_url(request)
        if tenant.lower() in ("common", "organizations"):
            tid = "{tenantid}"
        else:
            status = self.tenant_status(tenant)
            if status is not None:
                err = self._error(request, status, tenant=tenant)
                failure = json.loads(err.content)
                failure["error"] = "invalid_tenant"
                return json_response(400, failure)
            tid = self.em.directory.state.tenant.id
        path_tenant = tenant if tid == "{tenantid}" else tid
        body: JSON = {
            "token_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{path_tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nonce",
                "tid",
                "oid",
                "roles",
                "scp",
            ],
            "kerberos_endpoint": f"{base}/{path_tenant}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": urlsplit(base).hostname,
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
        return json_response(200, body, {"Cache-Control": "max-age=86400, private"})

    def instance_discovery(self, request: httpx.Request) -> httpx.Response:
        """GET /common/discovery/instance (MSAL's instance metadata)."""
        base = base_url(request)
        host = urlsplit(base).netloc
        auth = request.url.params.get("authorization_endpoint", f"{base}/common/oauth2/authorize")
        parts = urlsplit(auth)
        if parts.netloc != host:
            return json_response(
                400,
                {
                    "error": "invalid_instance",
                    "error_description": "AADSTS50049: Unknown or invalid instance.",
                },
            )
        tenant = parts.path.strip("/").split("/")[0] or "common"
        return json_response(
            200,
            {
                "tenant_discovery_endpoint": f"{base}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
                ],
            },
        )

    def keys(self, request: httpx.Request, tenant: str) -> httpx.Response:
        """GET /{tenant}/discovery/v2.0/keys."""
        return json_response(200, self.em.tokens.jwks())

    # --- token endpoint -----------------------------------------------------------------------

    @staticmethod
    def _form(request: httpx.Request) -> dict[str, str]:
        parsed = parse_qs(request.content.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def token(self, request: httpx.Request, tenant: str) -> httpx.Response:
        """POST /{tenant}/oauth2/v2.0/token."""
        form = self._form(request)
        grant = form.get("grant_type", "")
        if not grant:
            return self._error(request, 900144, param="grant_type")
        if grant == "client_credentials":
            if tenant.lower() in ("common", "consumers", "organizations"):
                return self._error(request, 9001023)
            return self._client_credentials(request, tenant, form)
        if tenant.lower() not in ("common", "organizations"):
            status = self.tenant_status(tenant)
            if status is not None:
                return self._error(request, status, tenant=tenant)
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            return self._device_code_grant(request, form)
        if grant == "refresh_token":
            return self._refresh_grant(request, form)
        return self._error(request, 70003, grant=grant)

    def _client_credentials(
        self, request: httpx.Request, tenant: str, form: dict[str, str]
    ) -> httpx.Response:
        status = self.tenant_status(tenant)
        if status is not None:
            return self._error(request, status, tenant=tenant)
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                user, _, pw = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                user, pw = "", ""
            client_id, secret = unquote(user) or client_id, unquote(pw)
        if not client_id:
            return self._error(request, 900144, param="client_id")
        directory = self.em.directory
        tid = directory.state.tenant.id
        with directory.lock:
            app = directory.app_by_app_id(client_id)
            if app is None:
                return self._error(request, 700016, app=client_id, tenant=tid)
            sp = directory.sp_by_app_id(client_id)
            if sp is None:
                return self._error(request, 7000229, app=client_id, tenant=tid)
            if not seen(sp.replica, self.em.clock.now()):
                return self._error(request, 700016, app=client_id, tenant=tid)
            if not sp.account_enabled:
                return self._error(request, 7000112, app=client_id, name=sp.display_name)
            if not secret:
                return self._error(request, 7000218)
            now = self.em.clock.now()
            digest = _sha(secret)
            cred = next((c for c in app.password_credentials if c.secret_sha256 == digest), None)
            if cred is None or cred.start > now or not seen(cred.active, now):
                return self._error(request, 7000215, app=client_id)
            if cred.end <= now:
                return self._error(request, 7000222, app=client_id)
            scopes = [s for s in form.get("scope", "").split() if s not in RESERVED_SCOPES]
            if len(scopes) != 1:
                return self._error(request, 70011)
            if not scopes[0].endswith("/.default"):
                return self._error(request, 1002012, scope=scopes[0])
            resource_uri = scopes[0][: -len("/.default")]
            resource = directory.sp_by_name(resource_uri)
            if resource is None:
                return self._error(request, 500011, resource=resource_uri, tenant=tid)
            resource_uri = _audience(resource, resource_uri)
            roles = directory.token_roles(sp, resource)
        claims: JSON = {
            "aud": resource_uri,
            "iss": f"https://sts.windows.net/{tid}/",
            "idp": f"https://sts.windows.net/{tid}/",
            "app_displayname": app.display_name,
            "appid": app.app_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": sp.id,
            "sub": sp.id,
            "tid": tid,
            "ver": "1.0",
        }
        if roles:
            claims["roles"] = roles
        return self._token_response(claims, None)

    def _token_response(self, claims: JSON, extra: JSON | None) -> httpx.Response:
        now = int(self.em.clock.now().timestamp())
        lifetime = self.em.knobs.token_lifetime
        claims = {
            **claims,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "uti": secrets.token_urlsafe(16),
        }
        body: JSON = {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": self.em.tokens.issue(claims),
        }
        body.update(extra or {})
        return json_response(
            200, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
        )

    # --- interactive admin (device code) ------------------------------------------------------

    def _public_client(self, client_id: str) -> ServicePrincipal | None:
        sp = self.em.directory.sp_by_app_id(client_id)
        if sp is not None and sp.public_client:
            return sp
        app = self.em.directory.app_by_app_id(client_id)
        if app is not None and app.is_fallback_public_client:
            return self.em.directory.sp_by_app_id(client_id)
        return None

    def device_code(self, request: httpx.Request, tenant: str) -> httpx.Response:
        """POST /{tenant}/oauth2/v2.0/devicecode."""
        if tenant.lower() not in ("common", "organizations"):
            status = self.tenant_status(tenant)
            if status is not None:
                return self._error(request, status, tenant=tenant)
        form = self._form(request)
        client_id = form.get("client_id", "")
        if self._public_client(client_id) is None:
            return self._error(request, 700016, app=client_id, tenant=tenant)
        code = secrets.token_urlsafe(32)
        user_code = self.em.ids.letters(9)
        self._device_flows[code] = {
            "client_id": client_id,
            "scope": form.get("scope", ""),
            "pending": self.em.knobs.device_code_pending_polls,
        }
        uri = f"{base_url(request)}/devicelogin"
        return json_response(
            200,
            {
                "user_code": user_code,
                "device_code": code,
                "verification_uri": uri,
                "expires_in": 900,
                "interval": 5,
                "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate.",
            },
        )

    def _device_code_grant(self, request: httpx.Request, form: dict[str, str]) -> httpx.Response:
        flow = self._device_flows.get(form.get("device_code", ""))
        if flow is None or flow["client_id"] != form.get("client_id"):
            return self._error(request, 70000)
        if flow["pending"] > 0:
            flow["pending"] -= 1
            return self._error(request, 70016)
        del self._device_flows[form["device_code"]]
        return self._user_tokens(request, flow["client_id"], flow["scope"])

    def _refresh_grant(self, request: httpx.Request, form: dict[str, str]) -> httpx.Response:
        grant = self._refresh_tokens.get(form.get("refresh_token", ""))
        if grant is None or grant["client_id"] != form.get("client_id"):
            return self._error(request, 70008)
        return self._user_tokens(request, grant["client_id"], form.get("scope", grant["scope"]))

    def _user_tokens(self, request: httpx.Request, client_id: str, scope: str) -> httpx.Response:
        directory = self.em.directory
        tid = directory.state.tenant.id
        user = directory.get_user(f"admin@{directory.state.tenant.initial_domain}")
        requested = scope.split()
        resource_scopes = [s for s in requested if s not in RESERVED_SCOPES]
        # A scope without a resource ("User.Read") is a Microsoft Graph permission.
        split = [s.rsplit("/", 1) if "/" in s else [GRAPH_APP_ID, s] for s in resource_scopes]
        resource_uri = split[0][0] if split else GRAPH_APP_ID
        resource = directory.sp_by_name(resource_uri)
        if resource is None:
            return self._error(request, 500011, resource=resource_uri, tenant=tid)
        resource_uri = _audience(resource, resource_uri)
        prefix = f"{resource_uri}/" if resource_scopes and "/" in resource_scopes[0] else ""
        offered = {s["value"] for s in resource.oauth2_permission_scopes} - RESERVED_SCOPES
        names = {name for _, name in split}
        granted = sorted(offered if ".default" in names else offered & names)
        claims: JSON = {
            "aud": resource_uri,
            "iss": f"https://sts.windows.net/{tid}/",
            "amr": ["pwd", "mfa"],
            "appid": client_id,
            "appidacr": "0",
            "idtyp": "user",
            "name": user.display_name,
            "oid": user.id,
            "sub": user.id,
            "tid": tid,
            "scp": " ".join(granted),
            "unique_name": user.user_principal_name,
            "upn": user.user_principal_name,
            "ver": "1.0",
            "wids": ["62e90394-69f5-4237-9190-012177145e10"],
        }
        now = int(self.em.clock.now().timestamp())
        extra: JSON = {"scope": " ".join(f"{prefix}{g}" for g in granted)}
        client_info = {"uid": user.id, "utid": tid}
        extra["client_info"] = (
            base64.urlsafe_b64encode(json.dumps(client_info).encode()).decode().rstrip("=")
        )
        if "openid" in requested:
            extra["id_token"] = self.em.tokens.issue(
                {
                    "aud": client_id,
                    "iss": f"{base_url(request)}/{tid}/v2.0",
                    "iat": now,
                    "nbf": now,
                    "exp": now + 3600,
                    "name": user.display_name,
                    "oid": user.id,
                    "preferred_username": user.user_principal_name,
                    "sub": user.id,
                    "tid": tid,
                    "ver": "2.0",
                }
            )
        if "offline_access" in requested:
            token = secrets.token_urlsafe(48)
            self._refresh_tokens[token] = {"client_id": client_id, "scope": scope}
            extra["refresh_token"] = token
        return self._token_response(claims, extra)


def _audience(resource: ServicePrincipal, requested: str) -> str:
    """The resource's service principal name matching ``requested``, spelt as registered."""
    key = requested.rstrip("/").lower()
    exact = [n for n in resource.service_principal_names if n.lower() == requested.lower()]
    loose = [n for n in resource.service_principal_names if n.rstrip("/").lower() == key]
    return next(iter(exact + loose), requested)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
