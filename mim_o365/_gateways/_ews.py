"""The mailbox check through EWS, as the MIM installer does it, on exchangelib.

exchangelib hard-codes the public cloud's token URL and Exchange scope, and takes its TLS trust
from an HTTP adapter class. Here the token URL and scope come from the :class:`Cloud`, and a
trust adapter pins the cloud's CA for the hosts registered with it (and only those), so the
check works in every cloud and against the emulator.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import requests
import requests.adapters
from exchangelib import (
    IMPERSONATION,
    OAUTH2,
    Account,
    Configuration,
    FailFast,
    Identity,
    OAuth2Credentials,
    Version,
)
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorInvalidExchangeImpersonationHeaderData,
    ErrorNonExistentMailbox,
    EWSError,
    MalformedResponseError,
    UnauthorizedError,
)
from exchangelib.protocol import BaseProtocol
from exchangelib.version import EXCHANGE_O365
from oauthlib.oauth2 import OAuth2Error

from mim_o365._clouds import Cloud
from mim_o365._gateways._clients import transport_session
from mim_o365._secrets import Secret

log = logging.getLogger("mim_o365.ews")


class CloudOAuth2Credentials(OAuth2Credentials):  # type: ignore[misc]
    """exchangelib client credentials with the cloud's token URL and Exchange scope."""

    def __init__(self, *, token_url: str, scope: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._token_url = token_url
        self._scope = scope

    @property
    def token_url(self) -> str:
        """The cloud's v2.0 token endpoint for the tenant."""
        return self._token_url

    @property
    def scope(self) -> list[str]:
        """``<exchange resource>/.default``."""
        return [self._scope]


class CloudTrustAdapter(requests.adapters.HTTPAdapter):
    """exchangelib's HTTP adapter: pins TLS trust (or an in-process transport) per registered host.

    exchangelib builds its adapters from a class attribute; this class is installed there once and
    behaves exactly like ``HTTPAdapter`` for every host nobody registered.
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _ca: ClassVar[dict[str, str]] = {}
    _transports: ClassVar[dict[str, httpx.BaseTransport]] = {}

    @classmethod
    def register(
        cls, url: str, *, ca_file: str | None = None, transport: httpx.BaseTransport | None = None
    ) -> None:
        """Route requests for ``url``'s host: verify with ``ca_file``, or answer from ``transport``."""
        host = urlsplit(url).netloc.lower()
        with cls._lock:
            if ca_file:
                cls._ca[host] = ca_file
            if transport is not None:
                cls._transports[host] = transport
        if BaseProtocol.HTTP_ADAPTER_CLS is requests.adapters.HTTPAdapter:
            BaseProtocol.HTTP_ADAPTER_CLS = cls
        elif not issubclass(BaseProtocol.HTTP_ADAPTER_CLS, cls):
            log.warning(
                "exchangelib's HTTP adapter was replaced by %s; the cloud's CA may not be trusted",
                BaseProtocol.HTTP_ADAPTER_CLS.__name__,
            )

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send, with the registered trust or transport for the host."""
        host = urlsplit(request.url or "").netloc.lower()
        transport = self._transports.get(host)
        if transport is not None:
            session = transport_session(transport)
            adapter = session.get_adapter(request.url or "")
            return adapter.send(request, *args, **kwargs)
        ca = self._ca.get(host)
        if ca is not None:
            kwargs["verify"] = ca  # explicit: REQUESTS_CA_BUNDLE cannot override it
        return super().send(request, *args, **kwargs)


@dataclass(frozen=True)
class EwsOutcome:
    """The result of one EWS GetFolder(inbox) with impersonation: ``kind`` says what happened."""

    ok: bool
    kind: str  # ok | unauthorized | forbidden | access_denied | mailbox_missing | impersonation | transport | error
    detail: str = ""


def _oauth_token(result: dict[str, Any]) -> dict[str, Any]:
    # A token we already hold: exchangelib then never fetches one itself (its OAuth library logs
    # the token request's form, client secret included, at DEBUG level).
    lifetime = int(result.get("expires_in", 3599))
    return {
        "access_token": result["access_token"],
        "token_type": "Bearer",
        "expires_in": lifetime,
        "expires_at": time.time() + lifetime,
    }


def ews_configuration(
    cloud: Cloud,
    tenant_id: str,
    client_id: str,
    secret: Secret,
    mailbox: str,
    *,
    transport: httpx.BaseTransport | None = None,
    access_token: dict[str, Any] | None = None,
) -> Configuration:
    """exchangelib configuration for app-only EWS in ``cloud``: its EWS URL, token URL and scope."""
    ca_file = str(cloud.ca_file) if cloud.ca_file else None
    CloudTrustAdapter.register(cloud.ews_url, ca_file=ca_file, transport=transport)
    CloudTrustAdapter.register(cloud.token_url(tenant_id), ca_file=ca_file, transport=transport)
    credentials = CloudOAuth2Credentials(
        token_url=cloud.token_url(tenant_id),
        scope=cloud.exchange_scope,
        client_id=client_id,
        client_secret=secret.reveal(),
        tenant_id=tenant_id,
        identity=Identity(primary_smtp_address=mailbox),
        access_token=_oauth_token(access_token) if access_token else None,
    )
    return Configuration(
        service_endpoint=cloud.ews_url,
        credentials=credentials,
        auth_type=OAUTH2,
        retry_policy=FailFast(),
        version=Version(build=EXCHANGE_O365, api_version="Exchange2016"),
    )


def check_inbox(
    cloud: Cloud,
    tenant_id: str,
    client_id: str,
    secret: Secret,
    mailbox: str,
    *,
    transport: httpx.BaseTransport | None = None,
    access_token: dict[str, Any] | None = None,
) -> EwsOutcome:
    """GetFolder(inbox) on ``mailbox`` as the app, through exchangelib (blocking; run it in a thread)."""
    config = ews_configuration(
        cloud, tenant_id, client_id, secret, mailbox, transport=transport, access_token=access_token
    )
    account = None
    try:
        account = Account(mailbox, config=config, autodiscover=False, access_type=IMPERSONATION)
        account.inbox.refresh()
        return EwsOutcome(True, "ok")
    except UnauthorizedError:
        return EwsOutcome(False, "unauthorized", "EWS rejected the token (HTTP 401)")
    except ErrorNonExistentMailbox:
        return EwsOutcome(False, "mailbox_missing", f"{mailbox} has no mailbox in Exchange Online")
    except ErrorAccessDenied as exc:
        return EwsOutcome(False, "access_denied", str(exc)[:200])
    except ErrorInvalidExchangeImpersonationHeaderData:
        return EwsOutcome(False, "impersonation", "EWS refused the impersonation header")
    except MalformedResponseError as exc:
        if "Code: 403" in str(exc):
            return EwsOutcome(False, "forbidden", "EWS answered HTTP 403")
        return EwsOutcome(False, "error", str(exc).split(" headers:")[0][:200])
    except OAuth2Error as exc:
        return EwsOutcome(False, "unauthorized", f"the token service refused the app: {exc.error}")
    except requests.RequestException as exc:
        return EwsOutcome(False, "transport", exc.__class__.__name__)
    except (EWSError, ValueError) as exc:
        text = str(exc)
        if "invalid_client" in text or "unauthorized_client" in text:
            return EwsOutcome(
                False, "unauthorized", "the token service refused the app's credentials"
            )
        return EwsOutcome(
            False, "error", f"{exc.__class__.__name__}: {text.split(' headers:')[0][:200]}"
        )
    finally:
        if account is not None:
            account.protocol.close()
