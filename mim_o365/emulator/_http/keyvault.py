"""Azure Key Vault secrets (the subset the secret destination uses), under ``/keyvault/{vault}``.

The wire is Key Vault's data plane as azure-keyvault-secrets speaks it: the bearer challenge
(``401`` with ``WWW-Authenticate: Bearer authorization="<authority>/<tenant>",
resource="https://vault.azure.net"``), access-policy ``403`` answers, Key Vault's error envelope
``{"error": {"code", "message", "innererror"?}}`` and times as Unix seconds.

Secret ids are Key Vault's own identifiers, ``https://<vault>.vault.azure.net/secrets/<name>/<version>``,
not loopback URLs: the SDK parses an id as ``scheme://host/<collection>/<name>[/<version>]`` and
rejects anything with more path segments. Links the client follows (``nextLink``) point back here.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

import httpx
import jwt

from mim_o365.emulator import _seed
from mim_o365.emulator._errors import EmulatorError
from mim_o365.emulator._http._common import JSON, base_url, json_response, match, read_json, route
from mim_o365.emulator._keyvault import (
    RECOVERABLE_DAYS,
    RECOVERY_LEVEL,
    KeyVaults,
    bad_parameter,
)
from mim_o365.emulator._tokens import InvalidToken

if TYPE_CHECKING:
    from mim_o365.emulator._emulator import Emulator
    from mim_o365.emulator._models import Vault, VaultSecret, VaultSecretVersion

# The versions azure-keyvault-secrets (4.8 and later) can be told to send, newest last.
API_VERSIONS: Final = frozenset(
    {"2016-10-01", "7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"}
)
LATEST_API_VERSION: Final = "2026-04-01"
# The emulator serves the public cloud's identifiers (see EmulatorServer.cloud).
RESOURCE: Final = "https://vault.azure.net"
VAULT_SUFFIX: Final = "vault.azure.net"
PAGE_SIZE: Final = 25

_VAULT_PATH = re.compile(r"^/keyvault/(?P<vault>[^/]+)(?P<rest>/.*)?$")
_NAME = r"(?P<name>[^/]+)"

ROUTES = [
    route("GET", r"/secrets/?", "list_secrets"),
    route("GET", rf"/secrets/{_NAME}/versions/?", "list_versions"),
    route("PUT DELETE", rf"/secrets/{_NAME}/?", "secret"),
    route("GET PATCH", rf"/secrets/{_NAME}(?:/(?P<version>[^/]*))?", "version"),
    route("GET", r"/deletedsecrets/?", "list_deleted"),
    route("GET DELETE", rf"/deletedsecrets/{_NAME}/?", "deleted"),
    route("POST", rf"/deletedsecrets/{_NAME}/recover/?", "recover"),
]

# Which access-policy permission each operation needs.
_PERMISSION = {
    ("list_secrets", "GET"): "list",
    ("list_versions", "GET"): "list",
    ("secret", "PUT"): "set",
    ("secret", "DELETE"): "delete",
    ("version", "GET"): "get",
    ("version", "PATCH"): "set",
    ("list_deleted", "GET"): "list",
    ("deleted", "GET"): "list",
    ("deleted", "DELETE"): "purge",
    ("recover", "POST"): "recover",
}


class _Unauthorized(Exception):  # noqa: N818 - an answer, not a failure of the emulator
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Caller:
    """The validated bearer of a request."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.object_id = str(claims.get("oid", ""))
        self.app_id = str(claims.get("appid", ""))
        self.issuer = str(claims.get("iss", ""))


def _epoch(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp())


def _from_epoch(value: object, what: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_parameter(f"Invalid value for attribute '{what}': expected seconds since 1970.")
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (OverflowError, OSError, ValueError):
        raise bad_parameter(f"Attribute '{what}' is out of range.") from None


def error_response(err: EmulatorError, headers: dict[str, str] | None = None) -> httpx.Response:
    """Key Vault's error envelope."""
    error: JSON = {"code": err.code, "message": err.message}
    if err.details:
        error["innererror"] = err.details[0]
    return json_response(err.status, {"error": error}, {**err.headers, **(headers or {})})


class KeyVault:
    """The Key Vault surface of an :class:`Emulator`; ``vaults`` is the backend."""

    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator
        self.vaults = KeyVaults(emulator.directory.state, emulator.ids, emulator.clock.now)
        with emulator.directory.lock:
            self.vaults.seed()

    # --- entry --------------------------------------------------------------------------------

    def handle(self, request: httpx.Request, path: str) -> httpx.Response:
        """Serve ``path`` (starting with ``/keyvault/``)."""
        headers = {
            "x-ms-request-id": self.em.ids.guid(),
            "x-ms-keyvault-region": "emulator",
            "x-ms-keyvault-service-version": "1.9.0.0",
            "Cache-Control": "no-cache",
            "Pragma": "no-cache",
            "X-Content-Type-Options": "nosniff",
        }
        try:
            response = self._serve(request, path)
        except _Unauthorized as exc:
            tid = self.em.directory.state.tenant.id
            headers["WWW-Authenticate"] = (
                f'Bearer authorization="{base_url(request)}/{tid}", resource="{RESOURCE}"'
            )
            response = error_response(EmulatorError(401, "Unauthorized", exc.message))
        except EmulatorError as err:
            response = error_response(err)
        response.headers.update(headers)
        return response

    def _serve(self, request: httpx.Request, path: str) -> httpx.Response:
        m = _VAULT_PATH.match(path)
        if m is None:
            raise EmulatorError(404, "VaultNotFound", "The request names no vault.")
        vault = self.vaults.vault(m["vault"])
        caller = self._authenticate(request)
        version = request.url.params.get("api-version")
        if not version:
            raise bad_parameter("The request URI is missing the required api-version parameter.")
        if version not in API_VERSIONS:
            raise bad_parameter(
                f"The specified version ({version}) is not recognized. Consider using the latest "
                f"supported version ({LATEST_API_VERSION})."
            )
        rest = m["rest"] or "/"
        found = match(ROUTES, request.method, rest)
        if found is None:
            raise EmulatorError(404, "NotFound", f"The requested resource '{rest}' was not found.")
        if found == "method":
            raise EmulatorError(
                405, "MethodNotAllowed", f"The method {request.method} is not allowed on '{rest}'."
            )
        assert not isinstance(found, str)  # noqa: S101 - narrowed above
        r, params = found
        self.vaults.require(
            vault,
            caller.object_id,
            _PERMISSION[(r.handler, request.method)],
            app_id=caller.app_id,
            issuer=caller.issuer,
        )
        handler = getattr(self, f"_{r.handler}")
        response: httpx.Response = handler(request, vault, **params)
        return response

    def _authenticate(self, request: httpx.Request) -> _Caller:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() not in ("bearer", "pop") or not token:
            raise _Unauthorized("AKV10000: Request is missing a Bearer or PoP token.")
        directory = self.em.directory
        kv = directory.sp_by_app_id(_seed.KEYVAULT_APP_ID)
        audiences = tuple(kv.service_principal_names) if kv else (RESOURCE, _seed.KEYVAULT_APP_ID)
        expected = f"{RESOURCE} or {_seed.KEYVAULT_APP_ID}"
        try:
            claims = self.em.tokens.validate(token, audiences=audiences, now=self.em.clock.now())
        except InvalidToken as exc:
            if exc.kind == "invalid_resource":
                raise _Unauthorized(
                    f"AKV10022: Invalid audience. Expected {expected}, found: {_aud(token)}."
                ) from None
            if exc.kind == "expired":
                raise _Unauthorized("Token is expired. Acquire a new token and retry.") from None
            raise _Unauthorized(
                "Invalid token: the token is malformed or its signature is invalid."
            ) from None
        aud = str(claims.get("aud", ""))
        if aud not in audiences:  # Key Vault compares exactly: "https://vault.azure.net/" fails
            raise _Unauthorized(f"AKV10022: Invalid audience. Expected {expected}, found: {aud}.")
        tid = directory.state.tenant.id
        issuer = f"https://sts.windows.net/{tid}/"
        if claims.get("iss") != issuer or claims.get("tid") != tid:
            raise _Unauthorized(
                f"AKV10032: Invalid issuer. Expected one of {issuer}, found {claims.get('iss')}."
            )
        return _Caller(claims)

    # --- shapes -------------------------------------------------------------------------------

    @staticmethod
    def _vault_id(vault: Vault) -> str:
        return f"https://{vault.name.lower()}.{VAULT_SUFFIX}"

    @staticmethod
    def _attributes(v: VaultSecretVersion) -> JSON:
        attributes: JSON = {"enabled": v.enabled}
        if v.not_before is not None:
            attributes["nbf"] = _epoch(v.not_before)
        if v.expires is not None:
            attributes["exp"] = _epoch(v.expires)
        attributes["created"] = _epoch(v.created)
        attributes["updated"] = _epoch(v.updated)
        attributes["recoveryLevel"] = RECOVERY_LEVEL
        attributes["recoverableDays"] = RECOVERABLE_DAYS
        return attributes

    def _bundle(
        self,
        vault: Vault,
        secret: VaultSecret,
        v: VaultSecretVersion | None,
        *,
        value: bool = False,
        versioned: bool = True,
    ) -> JSON:
        v = v or secret.versions[-1]
        body: JSON = {}
        if value:
            body["value"] = v.value
        body["id"] = f"{self._vault_id(vault)}/secrets/{secret.name}"
        if versioned:
            body["id"] += f"/{v.version}"
        if v.content_type is not None:
            body["contentType"] = v.content_type
        body["attributes"] = self._attributes(v)
        if v.tags:
            body["tags"] = dict(v.tags)
        return body

    def _deleted_bundle(self, vault: Vault, secret: VaultSecret, *, item: bool) -> JSON:
        body: JSON = {
            "recoveryId": f"{self._vault_id(vault)}/deletedsecrets/{secret.name}",
            "deletedDate": _epoch(secret.deleted),
            "scheduledPurgeDate": _epoch(secret.scheduled_purge),
        }
        body.update(self._bundle(vault, secret, None, versioned=not item))
        return body

    def _page(
        self, request: httpx.Request, vault: Vault, items: list[JSON], path: str
    ) -> httpx.Response:
        params = request.url.params
        raw_max = params.get("maxresults")
        size = PAGE_SIZE
        if raw_max is not None:
            try:
                size = int(raw_max)
            except ValueError:
                size = 0
            if not 1 <= size <= PAGE_SIZE:
                raise bad_parameter(
                    f"Invalid value for maxresults: {raw_max}. It must be between 1 and {PAGE_SIZE}."
                )
        start = 0
        token = params.get("$skiptoken")
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise bad_parameter("The $skiptoken is invalid.") from None
            if start < 0:
                raise bad_parameter("The $skiptoken is invalid.")
        page = items[start : start + size]
        next_link = None
        if start + size < len(items):
            skip = base64.urlsafe_b64encode(str(start + size).encode()).decode().rstrip("=")
            next_link = (
                f"{base_url(request)}/keyvault/{quote(vault.name, safe='')}{path}"
                f"?api-version={params.get('api-version')}&$skiptoken={skip}&maxresults={size}"
            )
        return json_response(200, {"value": page, "nextLink": next_link})

    # --- operations ---------------------------------------------------------------------------

    def _secret(self, request: httpx.Request, vault: Vault, name: str) -> httpx.Response:
        if request.method == "DELETE":
            secret = self.vaults.delete_secret(vault, name)
            return json_response(200, self._deleted_bundle(vault, secret, item=False))
        self.vaults.check_name(name)
        body, problem = read_json(request)
        if problem is not None or not isinstance(body, dict):
            raise bad_parameter(problem or "The request body must be a JSON object.")
        value = body.get("value")
        if not isinstance(value, str):
            raise bad_parameter("The parameter 'value' is required and must be a string.")
        content_type = body.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise bad_parameter("The parameter 'contentType' must be a string.")
        attributes = body.get("attributes")
        attributes = {} if attributes is None else attributes
        if not isinstance(attributes, dict):
            raise bad_parameter("The parameter 'attributes' must be an object.")
        enabled = attributes.get("enabled", True)
        if not isinstance(enabled, bool):
            raise bad_parameter("Attribute 'enabled' must be true or false.")
        tags = body.get("tags")
        if tags is not None and not isinstance(tags, dict):
            raise bad_parameter("The parameter 'tags' must be an object.")
        secret, version = self.vaults.set_secret(
            vault,
            name,
            value,
            content_type=content_type,
            enabled=enabled,
            expires=_from_epoch(attributes.get("exp"), "exp"),
            not_before=_from_epoch(attributes.get("nbf"), "nbf"),
            tags=tags,
        )
        return json_response(200, self._bundle(vault, secret, version, value=True))

    def _version(
        self, request: httpx.Request, vault: Vault, name: str, version: str = ""
    ) -> httpx.Response:
        if request.method == "PATCH":
            return self._update(request, vault, name, version)
        secret, found = self.vaults.get_secret(vault, name, version or None)
        if not found.enabled:
            raise EmulatorError(
                403,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
                details=[{"code": "SecretDisabled"}],
            )
        return json_response(200, self._bundle(vault, secret, found, value=True))

    def _update(
        self, request: httpx.Request, vault: Vault, name: str, version: str
    ) -> httpx.Response:
        body, problem = read_json(request)
        if problem is not None or not isinstance(body, dict):
            raise bad_parameter(problem or "The request body must be a JSON object.")
        attributes = body.get("attributes")
        attributes = {} if attributes is None else attributes
        if not isinstance(attributes, dict):
            raise bad_parameter("The parameter 'attributes' must be an object.")
        enabled = attributes.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise bad_parameter("Attribute 'enabled' must be true or false.")
        content_type = body.get("contentType")
        if content_type is not None and not isinstance(content_type, str):
            raise bad_parameter("The parameter 'contentType' must be a string.")
        tags = body.get("tags")
        if tags is not None and not isinstance(tags, dict):
            raise bad_parameter("The parameter 'tags' must be an object.")
        fields = frozenset(k for k in ("contentType", "tags") if k in body) | frozenset(
            k for k in ("enabled", "exp", "nbf") if k in attributes
        )
        secret, updated = self.vaults.update(
            vault,
            name,
            version,
            content_type=content_type,
            enabled=enabled,
            expires=_from_epoch(attributes.get("exp"), "exp"),
            not_before=_from_epoch(attributes.get("nbf"), "nbf"),
            tags=tags,
            fields=fields,
        )
        return json_response(200, self._bundle(vault, secret, updated))

    def _list_secrets(self, request: httpx.Request, vault: Vault) -> httpx.Response:
        items = [self._bundle(vault, s, v, versioned=False) for s, v in self.vaults.secrets(vault)]
        return self._page(request, vault, items, "/secrets")

    def _list_versions(self, request: httpx.Request, vault: Vault, name: str) -> httpx.Response:
        secret, versions = self.vaults.versions(vault, name)
        items = [self._bundle(vault, secret, v) for v in versions]
        return self._page(request, vault, items, f"/secrets/{quote(secret.name, safe='')}/versions")

    def _list_deleted(self, request: httpx.Request, vault: Vault) -> httpx.Response:
        items = [
            self._deleted_bundle(vault, s, item=True) for s in self.vaults.deleted_secrets(vault)
        ]
        return self._page(request, vault, items, "/deletedsecrets")

    def _deleted(self, request: httpx.Request, vault: Vault, name: str) -> httpx.Response:
        if request.method == "DELETE":
            self.vaults.purge(vault, name)
            return json_response(204, None)
        secret = self.vaults.get_deleted(vault, name)
        return json_response(200, self._deleted_bundle(vault, secret, item=False))

    def _recover(self, request: httpx.Request, vault: Vault, name: str) -> httpx.Response:
        secret = self.vaults.recover(vault, name)
        return json_response(200, self._bundle(vault, secret, None))


def _aud(token: str) -> str:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    return str(claims.get("aud", ""))
