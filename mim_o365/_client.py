"""``mim_o365.Client``: the sync facade, one event loop for the client's whole life."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mim_o365 import _status, _unregister
from mim_o365._errors import UsageError
from mim_o365._plan import DEFAULT_DISPLAY_NAME
from mim_o365._register import Registration
from mim_o365._rotate import Rotation
from mim_o365._secrets import Secret
from mim_o365._sinks import SecretSink
from mim_o365._verify import Verification
from mim_o365.aio._client import DEFAULT_TIMEOUT
from mim_o365.aio._client import Client as AsyncClient

T = TypeVar("T")


class Client:
    """Synchronous twin of :class:`mim_o365.aio.Client`; takes the same arguments.

    One ``asyncio.Runner`` serves every call, so msgraph-sdk's connections survive between calls
    (no "Event loop is closed"). Use one Client per thread; inside async code use the aio Client.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._aclient = AsyncClient(*args, **kwargs)
        self._runner: asyncio.Runner | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return repr(self._aclient)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise UsageError(
                "mim_o365.Client was called inside a running event loop; use mim_o365.aio.Client there"
            )
        with self._lock:
            if self._runner is None:
                self._runner = asyncio.Runner()
            return self._runner.run(coro)

    @property
    def requests(self) -> int:
        """HTTP requests made so far."""
        return self._aclient.requests

    def register_mailbox_app(
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
        """See :meth:`mim_o365.aio.Client.register_mailbox_app`."""
        return self._run(
            self._aclient.register_mailbox_app(
                mailbox,
                display_name=display_name,
                app_id=app_id,
                secret_lifetime_days=secret_lifetime_days,
                new_secret=new_secret,
                secret_sink=secret_sink,
                dry_run=dry_run,
                timeout=timeout,
                scope=scope,
                policy_group=policy_group,
                allow_list=allow_list,
                enable_ews=enable_ews,
                verify=verify,
            )
        )

    def secret_sink(self, spec: str) -> SecretSink:
        """See :meth:`mim_o365.aio.Client.secret_sink`."""
        return self._aclient.secret_sink(spec)

    def rotate_secret(
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
        """See :meth:`mim_o365.aio.Client.rotate_secret`."""
        return self._run(
            self._aclient.rotate_secret(
                app_id, before_expiry_days=before_expiry_days, max_age_days=max_age_days, force=force,
                keep=keep, include_foreign=include_foreign, secret_sinks=secret_sinks,
                lifetime_days=lifetime_days, mailbox=mailbox, verify=verify, rbac=rbac, lock_path=lock_path,
                timeout=timeout,
            )
        )

    def verify_mailbox_access(
        self,
        app_id: str,
        mailbox: str,
        secret: Secret,
        *,
        rbac: bool = False,
        diagnose: bool = True,
        timeout: float = 0.0,
    ) -> Verification:
        """See :meth:`mim_o365.aio.Client.verify_mailbox_access`."""
        return self._run(
            self._aclient.verify_mailbox_access(
                app_id, mailbox, secret, rbac=rbac, diagnose=diagnose, timeout=timeout
            )
        )

    def get_status(
        self,
        app_id: str,
        *,
        warn_days: int = 30,
        secret: Secret | None = None,
        mailbox: str | None = None,
        timeout: float = 120.0,
    ) -> _status.Status:
        """See :meth:`mim_o365.aio.Client.get_status`."""
        return self._run(
            self._aclient.get_status(
                app_id, warn_days=warn_days, secret=secret, mailbox=mailbox, timeout=timeout
            )
        )

    def list_registrations(
        self, *, warn_days: int = 30, timeout: float = 120.0
    ) -> list[_status.RegistrationSummary]:
        """See :meth:`mim_o365.aio.Client.list_registrations`."""
        return self._run(self._aclient.list_registrations(warn_days=warn_days, timeout=timeout))

    def unregister(
        self, app_id: str, *, dry_run: bool = False, timeout: float = DEFAULT_TIMEOUT
    ) -> _unregister.Unregistration:
        """See :meth:`mim_o365.aio.Client.unregister`."""
        return self._run(self._aclient.unregister(app_id, dry_run=dry_run, timeout=timeout))

    def close(self) -> None:
        """Close connections and the event loop."""
        with self._lock:
            if self._runner is not None:
                self._runner.run(self._aclient.aclose())
                self._runner.close()
                self._runner = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
