"""How mim-o365 builds the Microsoft client libraries for a cloud.

Production and the emulator go through these same functions; only the :class:`Cloud` differs (its
endpoints and, for the emulator, the CA to trust). Nothing here relies on library defaults that
point at the public cloud.
"""

from __future__ import annotations

import asyncio
import io
import ssl
from typing import Any

import httpx
import msal
import requests
import requests.adapters
import requests.structures
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from msgraph.graph_service_client import GraphServiceClient

from mim_o365._clouds import Cloud
from mim_o365._gateways._graph import build_graph_client
from mim_o365._secrets import Secret

DEFAULT_TIMEOUT = 30.0


def ssl_context(cloud: Cloud) -> ssl.SSLContext:
    """TLS settings: the cloud's CA when it names one, else the system store."""
    if cloud.ca_file is not None:
        return ssl.create_default_context(cafile=str(cloud.ca_file))
    return ssl.create_default_context()


def requests_verify(cloud: Cloud) -> str | bool:
    """``verify`` for requests-based clients."""
    return str(cloud.ca_file) if cloud.ca_file is not None else True


class PinnedSession(requests.Session):
    """A requests session whose TLS trust comes from the cloud and nowhere else.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override ``Session.verify``; passing
    ``verify`` on every request cannot be overridden, so that is what this session does.
    """

    def __init__(self, cloud: Cloud) -> None:
        super().__init__()
        self._pinned_verify = requests_verify(cloud)

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send with the pinned ``verify`` and a default timeout."""
        kwargs["verify"] = self._pinned_verify
        kwargs.setdefault("timeout", DEFAULT_TIMEOUT)
        return super().request(method, url, *args, **kwargs)


def confidential_client(
    cloud: Cloud,
    tenant: str,
    client_id: str,
    secret: Secret,
    *,
    http_client: requests.Session | None = None,
) -> msal.ConfidentialClientApplication:
    """An MSAL confidential client for app-only tokens in ``cloud``.

    Build a new one per retry of a request that failed with a 400: MSAL replays 400 answers from
    its own cache for a minute.
    """
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret.reveal(),
        authority=cloud.authority_url(tenant),
        http_client=http_client or PinnedSession(cloud),
        instance_discovery=cloud.instance_discovery,
        token_cache=msal.TokenCache(),
    )


def _identity_options(cloud: Cloud) -> dict[str, Any]:
    return {
        "authority": cloud.authority,
        "disable_instance_discovery": not cloud.instance_discovery,
        "connection_verify": requests_verify(cloud),
    }


def client_secret_credential(
    cloud: Cloud, tenant: str, client_id: str, secret: Secret
) -> ClientSecretCredential:
    """azure-identity's ClientSecretCredential for ``cloud`` (sync)."""
    return ClientSecretCredential(tenant, client_id, secret.reveal(), **_identity_options(cloud))


def async_client_secret_credential(
    cloud: Cloud, tenant: str, client_id: str, secret: Secret
) -> AsyncClientSecretCredential:
    """azure-identity's ClientSecretCredential for ``cloud`` (async)."""
    return AsyncClientSecretCredential(
        tenant, client_id, secret.reveal(), **_identity_options(cloud)
    )


class AsyncCredentialAdapter:
    """Lets a sync ``TokenCredential`` serve async code without blocking the event loop."""

    def __init__(self, credential: TokenCredential) -> None:
        self._credential = credential

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """Run the sync credential in a worker thread."""
        kwargs.pop("enable_cae", None)
        return await asyncio.to_thread(self._credential.get_token, *scopes, **kwargs)

    async def close(self) -> None:
        """Sync credentials are closed by their owner."""

    async def __aenter__(self) -> AsyncCredentialAdapter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def as_async_credential(credential: TokenCredential | AsyncTokenCredential) -> AsyncTokenCredential:
    """An async credential for ``credential``, adapting a sync one."""
    if asyncio.iscoroutinefunction(getattr(credential, "get_token", None)):
        return credential  # type: ignore[return-value]
    return AsyncCredentialAdapter(credential)  # type: ignore[arg-type]


def graph_http_client(
    cloud: Cloud, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The httpx client msgraph-sdk uses: ours, bound to the running loop, trusting the cloud's CA."""
    if transport is not None:
        return httpx.AsyncClient(transport=transport, timeout=DEFAULT_TIMEOUT)
    return httpx.AsyncClient(verify=ssl_context(cloud), timeout=DEFAULT_TIMEOUT)


def graph_client(
    cloud: Cloud,
    credential: TokenCredential | AsyncTokenCredential,
    *,
    http_client: httpx.AsyncClient | None = None,
) -> GraphServiceClient:
    """A msgraph-sdk client for ``cloud``'s Graph endpoint, built as the library builds its own.

    Build it inside the coroutine that uses it: its httpx client binds to the running loop.
    """
    return build_graph_client(
        cloud, as_async_credential(credential), http_client or graph_http_client(cloud)
    )


class TransportAdapter(requests.adapters.BaseAdapter):
    """requests over a sync httpx transport (tests hand one transport; MSAL speaks requests)."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        super().__init__()
        self._transport = transport

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: object = None,
        verify: object = True,
        cert: object = None,
        proxies: object = None,
    ) -> requests.Response:
        """Send through the httpx transport."""
        body = request.body
        content = body.encode() if isinstance(body, str) else bytes(body or b"")
        hx = httpx.Request(
            request.method or "GET",
            request.url or "",
            headers=dict(request.headers),
            content=content,
        )
        try:
            answer = self._transport.handle_request(hx)
            answer.read()
        except httpx.TransportError as exc:
            raise requests.ConnectionError(str(exc), request=request) from None
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers = requests.structures.CaseInsensitiveDict(answer.headers)
        response.raw = io.BytesIO(answer.content)
        response.url = request.url or ""
        response.request = request
        response.reason = answer.reason_phrase
        response.encoding = answer.encoding
        return response

    def close(self) -> None:
        """Nothing to release."""


def transport_session(transport: httpx.BaseTransport) -> requests.Session:
    """A requests session answered by ``transport``."""
    session = requests.Session()
    adapter = TransportAdapter(transport)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
