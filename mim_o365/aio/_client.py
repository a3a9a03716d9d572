"""``mim_o365.aio.Client``: the async core every other interface uses."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import requests
from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential
from msgraph.graph_service_client import GraphServiceClient

from mim_o365 import _status, _unregister
from mim_o365._clock import Clock, SystemClock
from mim_o365._clouds import PUBLIC, Cloud
from mim_o365._errors import ConfigurationError
from mim_o365._gateways import _clients
from mim_o365._gateways._exchange import ExchangeAdmin
from mim_o365._gateways._graph import GraphDirectory, build_graph_client
from mim_o365._gateways._identity import TokenProbe
from mim_o365._keyvault import make_sink
from mim_o365._plan import DEFAULT_DISPLAY_NAME, check_mailbox
from mim_o365._register import Registration, register
from mim_o365._retry import Deadline, ProgressCallback
from mim_o365._rotate import Rotation, rotate
from mim_o365._secrets import Secret
from mim_o365._sinks import SecretSink
from mim_o365._verify import Verification, verify_once, verify_until_ok

DEFAULT_TIMEOUT = 600.0


class Client:
    """Registers and maintains the MIM mailbox application in one tenant.

    Args:
        credential: the admin identity; any azure-identity credential, sync or async. None only
            for ``verify_mailbox_access`` without ``diagnose``.
        tenant: tenant id or verified domain.
        cloud: which Microsoft cloud (``Cloud.named("usgov")``, ``Cloud.from_file(...)``).
        clock: drives every wait (a ``FakeClock`` in tests).
        transport: an httpx transport that answers every request (an emulator's, in tests).
        on_progress: called with a message and the seconds elapsed while waiting.
    """

    def __init__(
        self,
        credential: TokenCredential | AsyncTokenCredential | None,
        *,
        tenant: str,
        cloud: Cloud = PUBLIC,
        clock: Clock | None = None,
        transport: httpx.MockTransport | None = None,
        on_progress: ProgressCallback | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._has_admin = credential is not None
        sync = credential is not None and not asyncio.iscoroutinefunction(getattr(credential, "get_token", None))
        self._sync_credential: TokenCredential | None = credential if sync else None  # type: ignore[assignment]
        self._credential = (
            _clients.as_async_credential(credential) if credential is not None else None
        )
        self._tenant = tenant
        self._cloud = cloud
        self._clock: Clock = clock or SystemClock()
        self._transport = transport
        self._on_progress = on_progress
        self._rng = rng or random.Random()  # noqa: S311 - jitter
        self._http: httpx.AsyncClient | None = None
        self._exo_http: httpx.AsyncClient | None = None
        self._graph: GraphServiceClient | None = None
        self.requests = 0

    def __repr__(self) -> str:
        return f"Client(tenant={self._tenant!r}, cloud={self._cloud.name!r})"

    def _session_factory(self) -> Callable[[], requests.Session] | None:
        if self._transport is None:
            return None
        transport = self._transport
        return lambda: _clients.transport_session(transport)

    def _directory(self, deadline: Deadline) -> GraphDirectory:
        # Built on first use, inside the running loop it will live on.
        if self._http is None or self._graph is None:
            self._http = _clients.graph_http_client(self._cloud, transport=self._transport)
            self._graph = build_graph_client(self._cloud, self._credential, self._http)
        return GraphDirectory(
            self._graph, deadline=deadline, on_progress=self._on_progress, rng=self._rng
        )

    def _exchange(self, deadline: Deadline) -> ExchangeAdmin:
        if self._exo_http is None:
            self._exo_http = _clients.graph_http_client(self._cloud, transport=self._transport)
        return ExchangeAdmin(
            self._cloud,
            self._credential,
            self._tenant,
            deadline=deadline,
            http_client=self._exo_http,
            on_progress=self._on_progress,
            rng=self._rng,
        )

    def _gateways(
        self, timeout: float
    ) -> tuple[GraphDirectory, TokenProbe, ExchangeAdmin, Deadline]:
        deadline = Deadline(self._clock, timeout)
        probe = TokenProbe(self._cloud, self._tenant, self._session_factory())
        return self._directory(deadline), probe, self._exchange(deadline), deadline

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
        scope: str = "policy",
        policy_group: str | None = None,
        allow_list: bool = True,
        enable_ews: bool = False,
        verify: bool = True,
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
        if not self._has_admin:
            raise ConfigurationError(
                "registering needs an admin identity (a credential); none was given"
            )
        directory, probe, exchange, deadline = self._gateways(timeout)
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
                exchange=exchange,
                scope=scope,
                policy_group=policy_group,
                allow_list=allow_list,
                enable_ews=enable_ews,
                verify=verify,
                transport=self._transport,
            )
        finally:
            self.requests += directory.requests + probe.requests + exchange.requests

    def secret_sink(self, spec: str) -> SecretSink:
        """A destination for a new secret: a file path, or ``keyvault://VAULT/NAME`` (written with
        this client's admin credential, which must then be a sync azure-identity credential).

        Raises:
            ConfigurationError: a malformed spec, or Key Vault without a usable credential.
        """
        return make_sink(spec, cloud=self._cloud, credential=self._sync_credential)

    async def rotate_secret(
        self,
        app_id: str,
        *,
        before_expiry_days: float = 30,
        max_age_days: float | None = None,
        force: bool = False,
        keep: int = 2,
        include_foreign: bool = False,
        secret_sinks: Sequence[SecretSink] = (),
        lifetime_days: int = 180,
        mailbox: str | None = None,
        verify: bool = True,
        rbac: bool = False,
        lock_path: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Rotation:
        """Replace the app's client secret when it is due; safe to run from cron every day.

        Mints the new secret, delivers it to every sink (or returns it when there is none), marks
        it delivered, verifies it end to end (token and EWS on the mailbox), and only then removes
        old secrets beyond ``keep``. A second concurrent run waits for the first and finds nothing due.

        Raises:
            ConfigurationError: bad input, unknown app, or a destination that failed (the new
                secret was removed again; old secrets untouched).
            LockBusyError: another run kept the lock until ``timeout`` (temporary).
        """
        if not self._has_admin:
            raise ConfigurationError("rotating needs an admin identity (a credential); none was given")
        directory, probe, exchange, deadline = self._gateways(timeout)
        try:
            if verify:
                exchange.tenant_id = (await directory.organization()).id
            return await rotate(
                directory=directory, probe=probe, exchange=exchange if verify else None, cloud=self._cloud,
                clock=self._clock, deadline=deadline, app_id=app_id, before_expiry_days=before_expiry_days,
                max_age_days=max_age_days, force=force, keep=keep, include_foreign=include_foreign,
                sinks=secret_sinks, lifetime_days=lifetime_days, mailbox=mailbox, verify=verify, rbac=rbac,
                lock_path=lock_path, on_progress=self._on_progress, transport=self._transport,
            )
        finally:
            self.requests += directory.requests + probe.requests + exchange.requests

    async def verify_mailbox_access(
        self,
        app_id: str,
        mailbox: str,
        secret: Secret,
        *,
        rbac: bool = False,
        diagnose: bool = True,
        timeout: float = 0.0,
    ) -> Verification:
        """Check, as the MIM installer does, that ``app_id`` with ``secret`` reaches ``mailbox`` through EWS.

        With ``timeout`` > 0, keeps polling while a layer may still be propagating. With ``diagnose``,
        an EWS denial is explained from the organization's settings (needs the admin identity).

        Raises:
            ConfigurationError: the mailbox address is malformed.
        """
        check_mailbox(mailbox)
        if diagnose and not self._has_admin:
            raise ConfigurationError(
                "diagnosing a denial needs the admin identity; pass a credential or diagnose=False"
            )
        deadline = Deadline(self._clock, timeout)
        probe = TokenProbe(self._cloud, self._tenant, self._session_factory())
        exchange = self._exchange(deadline)
        if diagnose:
            exchange.tenant_id = (await self._directory(deadline).organization()).id
        kw: dict[str, Any] = {
            "probe": probe,
            "cloud": self._cloud,
            "tenant_id": self._tenant,
            "app_id": app_id,
            "secret": secret,
            "mailbox": mailbox,
            "admin": exchange if diagnose else None,
            "rbac": rbac,
            "transport": self._transport,
        }
        try:
            if timeout <= 0:
                return await verify_once(**kw)
            return await verify_until_ok(deadline=deadline, on_progress=self._on_progress, **kw)
        finally:
            self.requests += probe.requests + exchange.requests

    async def get_status(
        self,
        app_id: str,
        *,
        warn_days: int = 30,
        secret: Secret | None = None,
        mailbox: str | None = None,
        timeout: float = 120.0,
    ) -> _status.Status:
        """The health of the registration of ``app_id``, layer by layer (reads only).

        Secrets (who made each, when it expires), consent or RBAC role assignment, the scoping
        group and access policy, ``EwsEnabled`` and the allow list; with ``secret``, also a live
        EWS check on the mailbox (by default the one in the app's ``mim-o365:mailbox:`` tag).
        ``health`` is ``warning`` when the newest valid secret expires within ``warn_days``.

        Raises:
            NotFoundError: no application ``app_id`` in the tenant.
            ConfigurationError: bad input, or ``secret`` without a known mailbox.
            PermissionDeniedError: the admin identity cannot read the directory or Exchange.
            ThrottledError, TransportError: temporary; run again.
        """
        if not self._has_admin:
            raise ConfigurationError(
                "reading the status needs an admin identity (a credential); none was given"
            )
        directory, probe, exchange, _deadline = self._gateways(timeout)
        try:
            return await _status.get_status(
                directory=directory,
                exchange=exchange,
                probe=probe,
                cloud=self._cloud,
                clock=self._clock,
                app_id=app_id,
                warn_days=warn_days,
                secret=secret,
                mailbox=mailbox,
                transport=self._transport,
            )
        finally:
            self.requests += directory.requests + probe.requests + exchange.requests

    async def list_registrations(
        self, *, warn_days: int = 30, timeout: float = 120.0
    ) -> list[_status.RegistrationSummary]:
        """Every application mim-o365 registered in the tenant (tag ``mim-o365``), judged by its
        secrets alone; one paged Graph query (999 applications a page).

        Raises:
            PermissionDeniedError: the admin identity cannot read applications.
            ThrottledError, TransportError: temporary; run again.
        """
        if not self._has_admin:
            raise ConfigurationError(
                "listing registrations needs an admin identity (a credential); none was given"
            )
        directory = self._directory(Deadline(self._clock, timeout))
        try:
            return await _status.list_registrations(
                directory=directory, clock=self._clock, warn_days=warn_days
            )
        finally:
            self.requests += directory.requests

    async def unregister(
        self, app_id: str, *, dry_run: bool = False, timeout: float = DEFAULT_TIMEOUT
    ) -> _unregister.Unregistration:
        """Remove what ``register`` created for ``app_id``, access first, the application last.

        An adopted application (``register --app-id``) is never deleted: only mim-o365's secrets
        and tags are removed. Idempotent: a second run removes nothing. ``dry_run`` lists the
        plan and writes nothing.

        Raises:
            ConfigurationError: ``app_id`` is not a GUID (nothing was read or written).
            PermissionDeniedError: the admin identity cannot remove an object.
            ServiceError: the EWS allow list changed under us (nothing of others was lost
                silently: the message says what to do).
            ThrottledError, TransportError: temporary; run again, it resumes.
        """
        if not self._has_admin:
            raise ConfigurationError(
                "unregistering needs an admin identity (a credential); none was given"
            )
        _status.check_app_id(app_id)
        directory, _probe, exchange, deadline = self._gateways(timeout)
        try:
            return await _unregister.unregister(
                directory=directory,
                exchange=exchange,
                deadline=deadline,
                app_id=app_id,
                dry_run=dry_run,
                on_progress=self._on_progress,
            )
        finally:
            self.requests += directory.requests + exchange.requests

    async def aclose(self) -> None:
        """Release HTTP connections (the credential stays with its owner)."""
        for client in (self._http, self._exo_http):
            if client is not None:
                await client.aclose()
        self._http = self._exo_http = None
        self._graph = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
