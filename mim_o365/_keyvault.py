"""Azure Key Vault as a secret destination: ``--secret-out keyvault://VAULT/NAME``.

Each delivery adds a new version of the secret (Key Vault keeps the old ones), with the client
secret's expiry as the version's ``exp`` and the application, tenant and key ids as tags, so the
consumer and an operator can see which credential a version holds without reading it.

Authentication is Key Vault's own challenge handshake, performed by azure-keyvault-secrets: the
first request goes without a token, the vault answers ``401`` naming its tenant and resource, and
the client asks the credential for a token for that tenant. The credential must therefore be able
to get tokens for the vault's tenant **id** (a GUID): a credential built for a domain name such as
``contoso.onmicrosoft.com`` is refused by azure-identity unless it allows that tenant.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from mim_o365._clouds import Cloud
from mim_o365._errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ServiceError,
    ThrottledError,
    TransportError,
    UsageError,
)
from mim_o365._secrets import Secret
from mim_o365._sinks import FileSink, SecretSink

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = [
    "CONTENT_TYPE",
    "SCHEME",
    "KeyVaultSink",
    "make_sink",
    "parse_secret_out",
]

SCHEME: Final = "keyvault://"
CONTENT_TYPE: Final = "text/plain; charset=utf-8"
MANAGED_BY: Final = "mim-o365"
# What to grant an identity that may not write the secret (RBAC role, access-policy permission).
NEEDED: Final = ("Key Vault Secrets Officer", "secrets set")

_VAULT_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
_NAME_RE = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_AADSTS_RE = re.compile(r"AADSTS\d+")
_EXAMPLE = "keyvault://contoso-vault/mim-o365-client-secret"
_TIMEOUT = 30


def parse_secret_out(spec: str) -> tuple[str, str] | None:
    """``(vault, name)`` for ``keyvault://VAULT/NAME``; None for anything else (a file path).

    Key Vault's naming rules are checked here, before anything is written: a vault name has 3-24
    letters, digits and hyphens, starts with a letter, ends with a letter or digit and has no
    ``--``; a secret name has 1-127 letters, digits and hyphens.

    Raises:
        ConfigurationError: ``spec`` is a Key Vault reference that breaks those rules, or a URL of
            another kind (which would otherwise be taken for a file name).
    """
    if not spec.lower().startswith("keyvault:"):
        if _URL_RE.match(spec):
            raise ConfigurationError(
                f"--secret-out {spec!r}: only file paths and keyvault://VAULT/NAME are supported "
                f"(a vault URL is not); for example {_EXAMPLE}"
            )
        return None
    if not spec.lower().startswith(SCHEME):
        raise ConfigurationError(
            f"--secret-out {spec!r}: write a Key Vault secret as keyvault://VAULT/NAME, "
            f"for example {_EXAMPLE}"
        )
    parts = spec[len(SCHEME) :].split("/")
    if len(parts) != 2 or not all(parts):
        raise ConfigurationError(
            f"--secret-out {spec!r}: expected exactly keyvault://VAULT/NAME (a vault name and a "
            f"secret name, no version and no trailing slash), for example {_EXAMPLE}"
        )
    vault, name = parts
    if "." in vault:
        short = vault.split(".", 1)[0]
        raise ConfigurationError(
            f"--secret-out {spec!r}: give the vault's name, not its host name: "
            f"keyvault://{short}/{name}"
        )
    if not _VAULT_RE.match(vault) or "--" in vault:
        raise ConfigurationError(
            f"--secret-out {spec!r}: {vault!r} is not a Key Vault name; vault names have 3-24 "
            "characters (letters, digits, hyphens), start with a letter, end with a letter or "
            "digit and have no consecutive hyphens"
        )
    if not _NAME_RE.match(name):
        raise ConfigurationError(
            f"--secret-out {spec!r}: {name!r} is not a Key Vault secret name; secret names have "
            "1-127 characters, only letters, digits and hyphens (no dots, underscores or "
            f"spaces), for example {_EXAMPLE.rsplit('/', 1)[1]}"
        )
    return vault, name


def _expiry(facts: Mapping[str, str]) -> datetime | None:
    raw = facts.get("expires_at", "")
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"facts['expires_at'] is not an ISO 8601 time: {raw!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _tags(facts: Mapping[str, str]) -> dict[str, str]:
    tags = {
        "application-id": facts.get("application_id", ""),
        "tenant-id": facts.get("tenant_id", ""),
        "key-id": facts.get("key_id", ""),
    }
    return {**{k: v for k, v in tags.items() if v}, "managed-by": MANAGED_BY}


class KeyVaultSink:
    """Stores the client secret as a new version of a Key Vault secret.

    Args:
        vault: the vault's name (``contoso-vault``), not its URL.
        name: the secret's name.
        cloud: where the vault lives (its DNS suffix, or an emulator's endpoint and CA).
        credential: a *sync* azure-core ``TokenCredential`` for an identity allowed to set secrets
            in the vault (RBAC ``Key Vault Secrets Officer``, or an access policy with ``set``).
        client_options: extra keyword arguments for ``SecretClient`` (for example ``retry_total``).
    """

    def __init__(
        self,
        vault: str,
        name: str,
        *,
        cloud: Cloud,
        credential: TokenCredential,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        if asyncio.iscoroutinefunction(getattr(credential, "get_token", None)):
            raise UsageError(
                "KeyVaultSink needs a sync credential (from azure.identity, not azure.identity.aio)"
            )
        self.vault = vault
        self.name = name
        self.cloud = cloud
        self._credential = credential
        self._client_options = dict(client_options or {})
        self.last_secret_id: str | None = None

    @classmethod
    def from_spec(
        cls,
        spec: str,
        *,
        cloud: Cloud,
        credential: TokenCredential,
        client_options: Mapping[str, Any] | None = None,
    ) -> KeyVaultSink:
        """A sink for ``keyvault://VAULT/NAME``.

        Raises:
            ConfigurationError: ``spec`` is not a valid Key Vault reference.
        """
        parsed = parse_secret_out(spec)
        if parsed is None:
            raise ConfigurationError(
                f"--secret-out {spec!r} is not a Key Vault reference; write keyvault://VAULT/NAME, "
                f"for example {_EXAMPLE}"
            )
        return cls(*parsed, cloud=cloud, credential=credential, client_options=client_options)

    @property
    def spec(self) -> str:
        """``keyvault://VAULT/NAME``."""
        return f"{SCHEME}{self.vault}/{self.name}"

    @property
    def vault_url(self) -> str:
        """The vault's URL in this cloud."""
        return self.cloud.keyvault_url(self.vault)

    @property
    def description(self) -> str:
        """``Key Vault secret VAULT/NAME``."""
        return f"Key Vault secret {self.vault}/{self.name}"

    def check(self) -> None:
        """Validate the vault and secret names (no request is sent)."""
        parse_secret_out(self.spec)

    def _client(self) -> SecretClient:
        options: dict[str, Any] = {
            "connection_timeout": _TIMEOUT,
            "read_timeout": _TIMEOUT,
            **self._client_options,
        }
        if self.cloud.keyvault_endpoint:
            # Vaults served under one endpoint (an emulator) are not on *.<keyvault_suffix>, the
            # only hosts the challenge's resource may name when verification is on.
            options["verify_challenge_resource"] = False
        if self.cloud.ca_file is not None:
            options["connection_verify"] = str(self.cloud.ca_file)
        return SecretClient(vault_url=self.vault_url, credential=self._credential, **options)

    def deliver(self, secret: Secret, facts: Mapping[str, str]) -> None:
        """Add the secret as a new version, with its expiry, content type and tags.

        Raises:
            PermissionDeniedError: the identity may not set secrets in the vault.
            AuthenticationError: no token for Key Vault.
            TransportError: the vault could not be reached.
            ConflictError: the secret is soft-deleted (recover or purge it first).
            ServiceError: Key Vault answered with another error.
        """
        expires_on = _expiry(facts)
        tags = _tags(facts)
        try:
            with self._client() as client:
                stored = client.set_secret(
                    self.name,
                    secret.reveal(),
                    content_type=CONTENT_TYPE,
                    expires_on=expires_on,
                    tags=tags,
                )
        except ClientAuthenticationError as exc:
            raise self._authentication_error(exc, secret) from None
        except ServiceRequestError as exc:
            raise TransportError(
                f"{self.description}: could not reach {self.vault_url} "
                f"({_scrub(str(exc), secret)}); check the vault name, the cloud and the network"
            ) from None
        except ServiceResponseError as exc:
            raise TransportError(
                f"{self.description}: the connection to {self.vault_url} failed before Key Vault "
                f"answered ({exc.__class__.__name__}); the secret may or may not be stored"
            ) from None
        except HttpResponseError as exc:
            raise self._service_error(exc, secret) from None
        except ValueError as exc:
            # The challenge named a resource that does not match the vault's host.
            raise ConfigurationError(
                f"{self.description}: {_scrub(str(exc), secret)}; check that the cloud matches "
                "the vault"
            ) from None
        self.last_secret_id = stored.id

    def _authentication_error(
        self, exc: ClientAuthenticationError, secret: Secret
    ) -> AuthenticationError:
        text = _scrub(_message(exc), secret)
        hint = "check the credential"
        if "not configured to acquire tokens for tenant" in text:
            hint = (
                "the vault belongs to the tenant named there; build the credential with that "
                "tenant id (a GUID), not a domain name"
            )
        code = _AADSTS_RE.search(text)
        return AuthenticationError(
            f"{self.description}: no token for Key Vault ({text}); {hint}",
            error_code=code.group(0) if code else None,
        )

    def _service_error(self, exc: HttpResponseError, secret: Secret) -> Exception:
        status = exc.status_code
        code = exc.error.code if exc.error is not None else None
        text = _scrub(_message(exc), secret)
        headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
        request_id = headers.get("x-ms-request-id")
        common: dict[str, Any] = {
            "service": "keyvault",
            "status_code": status,
            "error_code": code,
            "request_id": request_id,
        }
        if status == 403:
            return PermissionDeniedError(
                f"{self.description}: this identity may not set secrets in vault {self.vault} "
                f"({text}); grant it the '{NEEDED[0]}' role on the vault, or an access policy with "
                f"the '{NEEDED[1].split()[1]}' secret permission ({NEEDED[1]})",
                missing=NEEDED,
            )
        if isinstance(exc, ResourceNotFoundError) or status == 404:
            return NotFoundError(
                f"{self.description}: Key Vault answered 404 ({text}); check the vault name",
                **common,
            )
        if isinstance(exc, ResourceExistsError) or status == 409:
            return ConflictError(
                f"{self.description}: {text}; recover the deleted secret "
                f"(az keyvault secret recover --vault-name {self.vault} --name {self.name}) or "
                "purge it, or choose another name",
                **common,
            )
        if status == 429:
            return ThrottledError(
                f"{self.description}: Key Vault kept throttling ({text}); try again later",
                retry_after=_seconds(headers.get("Retry-After")),
                **common,
            )
        return ServiceError(f"{self.description}: Key Vault answered {status} ({text})", **common)

    def __repr__(self) -> str:
        return f"KeyVaultSink({self.spec!r}, cloud={self.cloud.name!r})"


def make_sink(spec: str, *, cloud: Cloud, credential: TokenCredential | None) -> SecretSink:
    """The destination ``--secret-out spec`` names: a :class:`KeyVaultSink` for
    ``keyvault://VAULT/NAME``, else a :class:`FileSink` for the path.

    Raises:
        ConfigurationError: a malformed Key Vault reference, or one without a credential.
    """
    parsed = parse_secret_out(spec)
    if parsed is None:
        return FileSink(Path(spec))
    if credential is None:
        raise ConfigurationError(
            f"--secret-out {spec}: writing to Key Vault needs a credential for an identity that "
            "may set secrets in the vault"
        )
    return KeyVaultSink(*parsed, cloud=cloud, credential=credential)


def _message(exc: Exception) -> str:
    if isinstance(exc, HttpResponseError) and exc.error is not None and exc.error.message:
        return str(exc.error.message)
    text = getattr(exc, "message", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else exc.__class__.__name__


def _scrub(text: str, secret: Secret) -> str:
    return text.replace(secret.reveal(), "***")


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
