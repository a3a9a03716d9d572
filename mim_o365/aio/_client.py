"""``mim_o365.aio.Client``: the async core every other interface uses."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import requests
from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential

from mim_o365._clock import Clock, SystemClock
from mim_o365._clouds import PUBLIC, Cloud
from mim_o365._gateways import _clients
from mim_o365._gateways._graph import GraphDirectory
from mim_o365._gateways._identity import TokenProbe
from mim_o365._plan import DEFAULT_DISPLAY_NAME
from mim_o365._register import Registration, register
from mim_o365._retry import Deadline, ProgressCallback
from mim_o365._sinks import SecretSink

DEFAULT_TIMEOUT = 600.0


class Client:
    """Registers and maintains the MIM mailbox application in one tenant.

    Args:
        credential: the admin identity; any azure-identity credential, sync or async.
        tenant: tenant id or verified domain.
        cloud: which Microsoft cloud (``Cloud.named("usgov")``, ``Cloud.from_file(...)``).
        clock: drives every wait (a ``FakeClock`` in tests).
        transport: an httpx transport that answers every request (an emulator's, in tests).
        on_progress: called with a message and the seconds elapsed while waiting.
    """

    def __init__(
        self,
        credential: TokenCredential | AsyncTokenCredential,
        *,
        tenant: str,
        cloud: Cloud = PUBLIC,
        clock: Clock | None = None,
        transport: httpx.MockTransport | None = None,
        on_progress: ProgressCallback | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._credential = _clients.as_async_credential(credential)
        self._tenant = tenant
        self._cloud = cloud
        self._clock: Clock = clock or SystemClock()
        self._transport = transport
        self._on_progress = on_progress
        self._rng = rng or random.Random()  # noqa: S311 - jitter
        self._http: httpx.AsyncClient | None = None
        self.requests = 0

    def __repr__(self) -> str:
        return f"Client(tenant={self._tenant!r}, cloud={self._cloud.name!r})"

    def _session_factory(self) -> Callable[[], requests.Session] | None:
        if self._transport is None:
            return None
        transport = self._transport
        return lambda: _clients.transport_session(transport)

    def _gateways(self, timeout: float) -> tuple[GraphDirectory, TokenProbe, Deadline]:
        if self._http is None:  # built on first use, inside the running loop it will live on
            self._http = _clients.graph_http_client(self._cloud, transport=self._transport)
        deadline = Deadline(self._clock, timeout)
        directory = GraphDirectory(
            self._cloud,
            self._credential,
            deadline=deadline,
            http_client=self._http,
            on_progress=self._on_progress,
            rng=self._rng,
        )
        probe = TokenProbe(self._cloud, self._tenant, self._session_factory())
        return directory, probe, deadline

    async def register_mailbox_app(
        self,
        mailbox: str,
        *,
        display_name: str = DEFAULT_DISPLAY_NAME,
        app_id: str | None = None,
        secret_lifetime_days: int = 180,
        new_secret: bool = False,
        secret_sink: SecretSink | None = None,
        dry_run: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Registration:
        """Register (or adopt and converge) the application MIM Service uses for ``mailbox``.

        Idempotent: a second run creates nothing and mints no secret unless ``new_secret``.

        Raises:
            ConfigurationError: bad input (checked before any write), unknown mailbox, policy cap.
            PlanConflictError: several applications claim this mailbox.
            PermissionDeniedError: the admin identity cannot create applications.
            PropagationTimeoutError: Microsoft's services did not catch up within ``timeout``.
            ThrottledError, TransportError: temporary; run again.
        """
        directory, probe, deadline = self._gateways(timeout)
        try:
            return await register(
                directory=directory,
                probe=probe,
                cloud=self._cloud,
                clock=self._clock,
                deadline=deadline,
                mailbox=mailbox,
                display_name=display_name,
                app_id=app_id,
                secret_lifetime_days=secret_lifetime_days,
                new_secret=new_secret,
                sink=secret_sink,
                dry_run=dry_run,
                on_progress=self._on_progress,
            )
        finally:
            self.requests += directory.requests + probe.requests

    async def aclose(self) -> None:
        """Release HTTP connections (the credential stays with its owner)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
