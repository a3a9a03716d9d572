"""National clouds: the only module that knows hosts, scopes and resource identifiers.

A cloud is data. Endpoints (where requests go) and resource identifiers (what tokens are for) are separate
fields, because an emulator serves every endpoint on one loopback address while its tokens still carry the
real audiences.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from mim_o365._errors import ConfigurationError

__all__ = ["BUILTIN_CLOUDS", "Cloud"]

_URL_FIELDS = (
    "authority",
    "graph_endpoint",
    "graph_resource",
    "exchange_endpoint",
    "exchange_resource",
)


@dataclass(frozen=True, slots=True)
class Cloud:
    """Where a Microsoft cloud's services live.

    Attributes:
        name: short name (``global``, ``usgov``, ``usgov-dod``, ``china`` or a described cloud's own).
        authority: login host, e.g. ``https://login.microsoftonline.com`` (no tenant, no trailing slash).
        graph_endpoint: Microsoft Graph base, e.g. ``https://graph.microsoft.com``.
        graph_resource: the Graph resource identifier used in scopes and token audiences.
        exchange_endpoint: Exchange Online base for EWS and the admin API.
        exchange_resource: the Exchange resource identifier used in scopes and token audiences.
        keyvault_suffix: DNS suffix of Key Vault, e.g. ``vault.azure.net`` (vault URL ``https://NAME.<suffix>``).
        keyvault_resource: the Key Vault resource identifier used in scopes and token audiences.
        keyvault_endpoint: when set (an emulator), vaults are served at ``<endpoint>/keyvault/NAME``
            instead of on their own host.
        ca_file: a PEM bundle to trust instead of the system store (an emulator's CA), or None.
        instance_discovery: whether MSAL may ask the global host for instance metadata. Off for
            hosts MSAL does not know, so that no request for them ever leaves for the public cloud.
    """

    name: str
    authority: str
    graph_endpoint: str
    graph_resource: str
    exchange_endpoint: str
    exchange_resource: str
    keyvault_suffix: str = "vault.azure.net"
    keyvault_resource: str = "https://vault.azure.net"
    keyvault_endpoint: str | None = None
    ca_file: Path | None = None
    instance_discovery: bool = True
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in _URL_FIELDS:
            value = getattr(self, name)
            parts = urlsplit(value)
            if parts.scheme != "https" or not parts.hostname:
                raise ConfigurationError(
                    f"cloud {self.name!r}: {name} must be an https URL, got {value!r}"
                )
            if value.endswith("/"):
                object.__setattr__(self, name, value.rstrip("/"))

    # --- derived URLs -------------------------------------------------------------------------

    @property
    def graph_scope(self) -> str:
        """``<graph resource>/.default``."""
        return f"{self.graph_resource}/.default"

    @property
    def exchange_scope(self) -> str:
        """``<exchange resource>/.default``."""
        return f"{self.exchange_resource}/.default"

    @property
    def graph_base_url(self) -> str:
        """Graph v1.0 base URL."""
        return f"{self.graph_endpoint}/v1.0"

    @property
    def ews_url(self) -> str:
        """The EWS SOAP endpoint."""
        return f"{self.exchange_endpoint}/EWS/Exchange.asmx"

    def keyvault_url(self, vault: str) -> str:
        """The base URL of Key Vault ``vault`` in this cloud."""
        if self.keyvault_endpoint:
            return f"{self.keyvault_endpoint.rstrip('/')}/keyvault/{quote(vault, safe='')}"
        return f"https://{vault}.{self.keyvault_suffix}"

    def authority_url(self, tenant: str) -> str:
        """Authority for ``tenant`` (GUID or verified domain)."""
        return f"{self.authority}/{quote(tenant, safe='')}"

    def token_url(self, tenant: str) -> str:
        """The v2.0 token endpoint for ``tenant``."""
        return f"{self.authority_url(tenant)}/oauth2/v2.0/token"

    def admin_api_url(self, tenant: str) -> str:
        """Exchange Online admin API ``InvokeCommand`` for ``tenant``."""
        return f"{self.exchange_endpoint}/adminapi/beta/{quote(tenant, safe='')}/InvokeCommand"

    def admin_consent_url(
        self, tenant: str, client_id: str, redirect_uri: str | None = None
    ) -> str:
        """The browser URL an administrator opens to grant admin consent."""
        url = f"{self.authority_url(tenant)}/adminconsent?client_id={quote(client_id, safe='')}"
        if redirect_uri:
            url += f"&redirect_uri={quote(redirect_uri, safe='')}"
        return url

    # --- (de)serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the cloud-file format)."""
        data = asdict(self)
        data["ca_file"] = str(self.ca_file) if self.ca_file else None
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> Cloud:
        """Build a cloud from a description; relative ``ca_file`` paths are taken from ``base_dir``.

        Raises:
            ConfigurationError: a field is missing or malformed.
        """
        missing = [k for k in ("name", *_URL_FIELDS) if not isinstance(data.get(k), str)]
        if missing:
            raise ConfigurationError(
                f"cloud description lacks {', '.join(missing)}; "
                f"expected string fields: name, {', '.join(_URL_FIELDS)}"
            )
        ca_raw = data.get("ca_file")
        ca_file: Path | None = None
        if ca_raw:
            ca_file = Path(str(ca_raw))
            if not ca_file.is_absolute() and base_dir is not None:
                ca_file = base_dir / ca_file
            if not ca_file.is_file():
                raise ConfigurationError(
                    f"cloud {data['name']!r}: ca_file {ca_file} does not exist"
                )
        extra = data.get("extra") or {}
        return cls(
            name=str(data["name"]),
            authority=str(data["authority"]),
            graph_endpoint=str(data["graph_endpoint"]),
            graph_resource=str(data["graph_resource"]),
            exchange_endpoint=str(data["exchange_endpoint"]),
            exchange_resource=str(data["exchange_resource"]),
            keyvault_suffix=str(data.get("keyvault_suffix") or "vault.azure.net"),
            keyvault_resource=str(data.get("keyvault_resource") or "https://vault.azure.net"),
            keyvault_endpoint=str(data["keyvault_endpoint"]) if data.get("keyvault_endpoint") else None,
            ca_file=ca_file,
            instance_discovery=bool(data.get("instance_discovery", False)),
            extra={str(k): str(v) for k, v in dict(extra).items()},
        )

    @classmethod
    def from_file(cls, path: str | Path) -> Cloud:
        """Read a cloud file (JSON), such as the one ``mim-o365 emulator serve`` writes.

        Raises:
            ConfigurationError: the file is missing, not JSON, or not a cloud description.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"cloud file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cloud file {path} is not readable JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigurationError(f"cloud file {path} must hold a JSON object")
        return cls.from_dict(data, base_dir=path.parent)

    def write(self, path: str | Path) -> None:
        """Write this description as a cloud file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def with_ca(self, ca_file: Path | None) -> Cloud:
        """A copy trusting ``ca_file``."""
        return replace(self, ca_file=ca_file)

    @classmethod
    def named(cls, name: str) -> Cloud:
        """A built-in cloud by name.

        Raises:
            ConfigurationError: unknown name (the message lists the choices).
        """
        try:
            return BUILTIN_CLOUDS[name]
        except KeyError:
            choices = ", ".join(BUILTIN_CLOUDS)
            raise ConfigurationError(
                f"unknown cloud {name!r}; choose one of {choices} or describe it with --cloud-file"
            ) from None


# Hosts and resource ids from Microsoft's national-cloud documentation (see the project's
# protocol reference, section 3). GCC (moderate) uses the global endpoints.
PUBLIC = Cloud(
    name="global",
    authority="https://login.microsoftonline.com",
    graph_endpoint="https://graph.microsoft.com",
    graph_resource="https://graph.microsoft.com",
    exchange_endpoint="https://outlook.office365.com",
    exchange_resource="https://outlook.office365.com",
)
USGOV = Cloud(
    name="usgov",
    authority="https://login.microsoftonline.us",
    graph_endpoint="https://graph.microsoft.us",
    graph_resource="https://graph.microsoft.us",
    exchange_endpoint="https://outlook.office365.us",
    exchange_resource="https://outlook.office365.us",
    keyvault_suffix="vault.usgovcloudapi.net",
    keyvault_resource="https://vault.usgovcloudapi.net",
)
USGOV_DOD = Cloud(
    name="usgov-dod",
    authority="https://login.microsoftonline.us",
    graph_endpoint="https://dod-graph.microsoft.us",
    graph_resource="https://dod-graph.microsoft.us",
    exchange_endpoint="https://outlook-dod.office365.us",
    exchange_resource="https://outlook-dod.office365.us",
    keyvault_suffix="vault.usgovcloudapi.net",
    keyvault_resource="https://vault.usgovcloudapi.net",
)
# The China authority host in current docs is not in MSAL's list of known hosts; with instance
# discovery on, MSAL would first ask the *global* host about it. Off, MSAL only reads the tenant's
# own OpenID configuration from the Chinese authority.
CHINA = Cloud(
    name="china",
    authority="https://login.partner.microsoftonline.cn",
    graph_endpoint="https://microsoftgraph.chinacloudapi.cn",
    graph_resource="https://microsoftgraph.chinacloudapi.cn",
    exchange_endpoint="https://partner.outlook.cn",
    exchange_resource="https://partner.outlook.cn",
    keyvault_suffix="vault.azure.cn",
    keyvault_resource="https://vault.azure.cn",
    instance_discovery=False,
)

BUILTIN_CLOUDS: Mapping[str, Cloud] = {c.name: c for c in (PUBLIC, USGOV, USGOV_DOD, CHINA)}
