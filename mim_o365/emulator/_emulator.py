"""The emulated tenant: backends plus one ``handle(httpx.Request) -> httpx.Response``.

That one function serves every client three ways: an httpx transport (msgraph-sdk, our own
clients), a requests adapter (msal, azure-identity, exchangelib) and the HTTPS server.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import requests
import requests.adapters

from mim_o365._clock import Clock, SystemClock
from mim_o365._gateways._clients import TransportAdapter, transport_session
from mim_o365.emulator._directory import Directory
from mim_o365.emulator._errors import EmulatorError
from mim_o365.emulator._exchange import Exchange
from mim_o365.emulator._http._common import ConnectionDropped, json_response
from mim_o365.emulator._http.ews import Ews
from mim_o365.emulator._http.exchange_admin import ExchangeAdmin
from mim_o365.emulator._http.graph import ODATA_JSON, Graph, odata_error
from mim_o365.emulator._http.identity import Identity
from mim_o365.emulator._http.keyvault import KeyVault
from mim_o365.emulator._ids import IdSource
from mim_o365.emulator._knobs import Faults, Knobs
from mim_o365.emulator._models import DirectoryState
from mim_o365.emulator._tokens import TokenIssuer

_IDENTITY = [
    (re.compile(r"^/common/discovery/instance$"), "GET", "instance_discovery"),
    (
        re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration$"),
        "GET",
        "openid_configuration",
    ),
    (re.compile(r"^/(?P<tenant>[^/]+)/discovery/v2\.0/keys$"), "GET", "keys"),
    (re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$"), "POST", "token"),
    (re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/devicecode$"), "POST", "device_code"),
]


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator answered (or dropped)."""

    service: str
    method: str
    path: str
    status: int


class Emulator:
    """An emulated Microsoft 365 tenant.

    Args:
        seed: makes ids and random faults reproducible.
        clock: drives token expiry, secret validity and time-based lags (a ``FakeClock`` in tests).
        knobs: eventual consistency and fault settings (see :class:`Knobs`).
        state: a persisted tenant to serve instead of a fresh one.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        clock: Clock | None = None,
        knobs: Knobs | None = None,
        state: DirectoryState | None = None,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.knobs = knobs or Knobs()
        self.ids = IdSource(seed)
        self.faults = Faults(self.knobs, random.Random(seed))  # noqa: S311 - fault draws, not secrets
        if state is None:
            self.directory = Directory.seeded(self.knobs, self.ids, self.clock.now)
        else:
            self.directory = Directory(state, self.knobs, self.ids, self.clock.now)
        self.exchange = Exchange(self.directory.state, self.knobs, self.ids, self.clock.now)
        self.tokens = TokenIssuer()
        self.identity = Identity(self)
        self.graph = Graph(self)
        self.exchange_admin = ExchangeAdmin(self)
        self.ews = Ews(self)
        self.keyvault = KeyVault(self)
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self.on_change: Callable[[], None] | None = None

    # --- facts for clients --------------------------------------------------------------------

    @property
    def tenant_id(self) -> str:
        """The tenant's GUID."""
        return self.directory.state.tenant.id

    @property
    def tenant_domain(self) -> str:
        """The initial ``*.onmicrosoft.com`` domain."""
        return self.directory.state.tenant.initial_domain

    @property
    def admin_client_id(self) -> str:
        """Client id of the seeded automation admin (app-only, holds every role the flow needs)."""
        return self.directory.state.admin_client_id

    @property
    def admin_client_secret(self) -> str:
        """Its client secret."""
        return self.directory.state.admin_client_secret

    @property
    def mailbox(self) -> str:
        """The MIM Service mailbox of the seeded tenant."""
        return f"MIMService@{self.tenant_domain}"

    def __repr__(self) -> str:
        return f"Emulator(tenant_id={self.tenant_id!r}, domain={self.tenant_domain!r})"

    # --- accounting ---------------------------------------------------------------------------

    def count(
        self, service: str | None = None, *, method: str | None = None, path: str | None = None
    ) -> int:
        """How many requests matched (all when no filter)."""
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (service is None or r.service == service)
                and (method is None or r.method == method)
                and (path is None or path in r.path)
            )

    def statuses(self) -> Counter[int]:
        """Answers by HTTP status."""
        with self._lock:
            return Counter(r.status for r in self.requests)

    def changed(self, method: str) -> None:
        """Called after a request; persists state after writes."""
        if method != "GET" and self.on_change is not None:
            self.on_change()

    # --- dispatch -----------------------------------------------------------------------------

    @staticmethod
    def service_of(path: str) -> str:
        """Which emulated service a path belongs to."""
        if path.startswith("/v1.0/") or path == "/v1.0":
            return "graph"
        if path.startswith("/adminapi/"):
            return "exchange-admin"
        if path.lower().startswith("/ews/"):
            return "ews"
        if path.startswith("/_emulator/"):
            return "control"
        if path.startswith("/keyvault/"):
            return "keyvault"
        return "identity"

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request.

        Raises:
            ConnectionDropped: the fault plan says to close the connection without an answer.
        """
        path = request.url.path
        service = self.service_of(path)
        status = 0
        try:
            response = self._handle(request, service, path)
            status = response.status_code
            return response
        finally:
            with self._lock:
                self.requests.append(RequestRecord(service, request.method, path, status))

    def _handle(self, request: httpx.Request, service: str, path: str) -> httpx.Response:
        fault = self.faults.draw(service, path) if service != "control" else None
        if fault is not None:
            kind, retry_after = fault
            if kind == "drop":
                raise ConnectionDropped(path)
            return self._fault_response(request, service, kind, retry_after)
        try:
            if service == "graph":
                return self.graph.handle(request, path[len("/v1.0") :])
            if service == "exchange-admin":
                with self.directory.lock:
                    response = self.exchange_admin.handle(request, path)
                self.changed(request.method)
                return response
            if service == "keyvault":
                with self.directory.lock:
                    response = self.keyvault.handle(request, path)
                self.changed(request.method)
                return response
            if service == "ews":
                with self.directory.lock:
                    return self.ews.handle(request, path)
            if service == "identity":
                answer = self._identity(request, path)
                if answer is not None:
                    return answer
        except EmulatorError as err:
            return odata_error(
                request, err, self.ids.guid(), self.clock.now().strftime("%Y-%m-%dT%H:%M:%S")
            )
        return odata_error(
            request,
            EmulatorError(404, "NotFound", f"No emulated service serves '{path}'."),
            self.ids.guid(),
            self.clock.now().strftime("%Y-%m-%dT%H:%M:%S"),
        )

    def _identity(self, request: httpx.Request, path: str) -> httpx.Response | None:
        for pattern, method, name in _IDENTITY:
            m = pattern.match(path)
            if m is None:
                continue
            if request.method != method:
                return json_response(
                    405,
                    {
                        "error": "invalid_request",
                        "error_description": f"AADSTS900561: The endpoint only accepts {method} requests.",
                    },
                )
            handler: Callable[..., httpx.Response] = getattr(self.identity, name)
            with self.directory.lock:
                response = handler(request, **m.groupdict())
            self.changed(request.method)
            return response
        return None

    def _fault_response(
        self, request: httpx.Request, service: str, kind: str, retry_after: int
    ) -> httpx.Response:
        headers = {"Retry-After": str(retry_after)}
        status = 429 if kind == "throttle" else 503
        if service == "identity":
            body: dict[str, Any] = {
                "error": "temporarily_unavailable",
                "error_description": "AADSTS50196: The server terminated an operation because it encountered a "
                "client request loop."
                if status == 429
                else "AADSTS90033: A transient error has occurred. Please try again.",
                "error_codes": [50196 if status == 429 else 90033],
            }
            return json_response(status, body, headers)
        code = "TooManyRequests" if status == 429 else "serviceNotAvailable"
        message = (
            "Too many requests. Please retry after the time specified in the Retry-After header."
            if status == 429
            else "The service is temporarily unavailable. Please retry later."
        )
        err = EmulatorError(status, code, message, headers=headers)
        response = odata_error(
            request, err, self.ids.guid(), self.clock.now().strftime("%Y-%m-%dT%H:%M:%S")
        )
        response.headers["Content-Type"] = ODATA_JSON
        return response

    # --- in-process transports ----------------------------------------------------------------

    def _handle_httpx(self, request: httpx.Request) -> httpx.Response:
        request.read()
        try:
            return self.handle(request)
        except ConnectionDropped:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from None

    def transport(self) -> httpx.MockTransport:
        """An httpx transport (sync and async) that answers from this emulator, for any host."""
        return httpx.MockTransport(self._handle_httpx)

    def requests_session(self) -> requests.Session:
        """A requests session whose every https/http request is answered by this emulator."""
        return transport_session(self.transport())


class RequestsAdapter(TransportAdapter):
    """requests transport adapter answered by an :class:`Emulator` (msal, azure-identity, exchangelib).

    exchangelib builds its adapters with pool arguments; they mean nothing here and are ignored.
    """

    def __init__(self, emulator: Emulator, **_pool_options: object) -> None:
        super().__init__(emulator.transport())
