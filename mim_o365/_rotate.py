"""Cron-safe secret rotation: mint, deliver, mark, verify, and only then remove old secrets.

Whatever step fails or is killed, a working secret remains: old secrets are removed only after
the new one was delivered and verified end to end, and the next run finishes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from mim_o365._clock import Clock
from mim_o365._clouds import Cloud
from mim_o365._errors import ConfigurationError, NotFoundError
from mim_o365._gateways._exchange import ExchangeAdmin
from mim_o365._gateways._graph import AppInfo, GraphDirectory, SecretInfo
from mim_o365._gateways._identity import TokenProbe
from mim_o365._lock import AppLock, lock_dir
from mim_o365._plan import (
    MANAGED_TAG,
    SECRET_NAME_PREFIX,
    check_lifetime,
    check_mailbox,
    mailbox_from_tags,
)
from mim_o365._register import remove_undelivered_secret
from mim_o365._retry import Deadline, Pending, ProgressCallback, Ready, poll
from mim_o365._rotation import (
    SecretFacts,
    age_key,
    delivered_ids,
    in_use,
    marker_tags,
    newest_in_use,
    removable,
    rotation_due,
    verified_ids,
)
from mim_o365._secrets import Secret
from mim_o365._sinks import SecretSink
from mim_o365._verify import Verification, verify_until_ok

log = logging.getLogger("mim_o365")


@dataclass(frozen=True)
class Rotation:
    """What a rotation run did. ``client_secret`` is set only when no destination took it."""

    application_id: str
    rotated: bool
    reason: str
    new_key_id: str | None = None
    expires_at: datetime | None = None
    delivered_to: tuple[str, ...] = ()
    removed_key_ids: tuple[str, ...] = ()
    verified: bool | None = None
    verification: Verification | None = None
    client_secret: Secret | None = None
    kept_key_ids: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self, *, reveal_secret: bool = False) -> dict[str, Any]:
        """JSON-ready fields; the secret only with ``reveal_secret``."""
        return {
            "application_id": self.application_id,
            "rotated": self.rotated,
            "reason": self.reason,
            "new_key_id": self.new_key_id,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "delivered_to": list(self.delivered_to),
            "removed_key_ids": list(self.removed_key_ids),
            "kept_key_ids": list(self.kept_key_ids),
            "verified": self.verified,
            "verification": self.verification.as_dict() if self.verification else None,
            "client_secret": self.client_secret.reveal()
            if (reveal_secret and self.client_secret)
            else None,
        }


def _facts(secrets: Sequence[SecretInfo]) -> list[SecretFacts]:
    return [SecretFacts(s.key_id, s.display_name, s.start, s.end, i) for i, s in enumerate(secrets)]


async def rotate(
    *,
    directory: GraphDirectory,
    probe: TokenProbe,
    exchange: ExchangeAdmin | None,
    cloud: Cloud,
    clock: Clock,
    deadline: Deadline,
    app_id: str,
    before_expiry_days: float = 30,
    max_age_days: float | None = None,
    force: bool = False,
    keep: int = 2,
    include_foreign: bool = False,
    sinks: Sequence[SecretSink] = (),
    lifetime_days: int = 180,
    mailbox: str | None = None,
    verify: bool = True,
    rbac: bool = False,
    lock_path: Path | None = None,
    on_progress: ProgressCallback | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Rotation:
    """Rotate the client secret of ``app_id`` when it is due (see module docstring for the order)."""
    check_lifetime(lifetime_days)
    if keep < 1:
        raise ConfigurationError(
            f"--keep {keep}: keep at least 1 secret (the new one); 2 lets the consumer switch over"
        )
    if before_expiry_days < 0 or (max_age_days is not None and max_age_days <= 0):
        raise ConfigurationError("--before-expiry must be >= 0 days and --max-age > 0 days")
    if mailbox is not None:
        mailbox = check_mailbox(mailbox)
    for sink in sinks:
        sink.check()

    app = await directory.application_by_app_id(app_id)
    if app is None:
        raise ConfigurationError(
            f"--app-id {app_id}: no such application in the tenant; check the id and --tenant"
        )
    if MANAGED_TAG not in app.tags:
        log.warning(
            "application %s is not tagged as registered by mim-o365; rotating it anyway", app_id
        )
    due, reason = rotation_due(
        _facts(app.secrets),
        app.tags,
        clock.now(),
        before_expiry_days=before_expiry_days,
        max_age_days=max_age_days,
        force=force,
    )
    if not due and not _leftovers(app, keep, include_foreign, clock.now()):
        return Rotation(app_id, False, reason)

    lock = AppLock(lock_path or lock_dir() / f"{app_id.lower()}.lock")
    await lock.acquire(deadline, f"the rotation lock of {app_id}")
    try:
        if not due:
            return await _tidy(
                directory, app_id, keep, include_foreign, clock.now(), reason, deadline, on_progress
            )
        return await _rotate_locked(
            directory=directory,
            probe=probe,
            exchange=exchange,
            cloud=cloud,
            clock=clock,
            deadline=deadline,
            app_id=app_id,
            before_expiry_days=before_expiry_days,
            max_age_days=max_age_days,
            force=force,
            keep=keep,
            include_foreign=include_foreign,
            sinks=sinks,
            lifetime_days=lifetime_days,
            mailbox=mailbox,
            verify=verify,
            rbac=rbac,
            on_progress=on_progress,
            transport=transport,
        )
    finally:
        lock.release()


def _leftovers(app: AppInfo, keep: int, include_foreign: bool, now: datetime) -> list[str]:
    """Old secrets a finished rotation should have removed (a run killed while removing them)."""
    facts = _facts(app.secrets)
    current = newest_in_use(facts, app.tags, now)
    if (
        current is None
        or not delivered_ids(app.tags)
        or current.key_id.lower() not in verified_ids(app.tags)
    ):
        return []
    newer = {s.key_id for s in facts if age_key(s) > age_key(current)}
    # Never tidy away a secret newer than the one in use: it may have reached a consumer.
    return [
        k
        for k in removable(
            facts, app.tags, new_key_id=current.key_id, keep=keep, include_foreign=include_foreign
        )
        if k not in newer
    ]


async def _tidy(
    directory: GraphDirectory,
    app_id: str,
    keep: int,
    include_foreign: bool,
    now: datetime,
    reason: str,
    deadline: Deadline,
    on_progress: ProgressCallback | None,
) -> Rotation:
    app = await directory.application_by_app_id(app_id)
    if app is None:
        raise ConfigurationError(f"--app-id {app_id}: the application disappeared")
    gone = _leftovers(app, keep, include_foreign, now)
    removed = await _remove(directory, app, gone, deadline, on_progress)
    return Rotation(
        app_id,
        False,
        f"{reason}; finished removing {len(removed)} old secret(s) beyond --keep {keep}",
        removed_key_ids=tuple(removed),
    )


async def _remove(
    directory: GraphDirectory,
    app: AppInfo,
    key_ids: Sequence[str],
    deadline: Deadline,
    on_progress: ProgressCallback | None,
    tags: list[str] | None = None,
) -> list[str]:
    removed: list[str] = []
    for key_id in key_ids:
        with contextlib.suppress(NotFoundError):  # already gone: the goal is reached
            await directory.remove_password(app.id, key_id)
        removed.append(key_id)
    if removed:
        await _set_tags(
            directory,
            app.id,
            marker_tags(tags if tags is not None else app.tags, forget=removed),
            deadline,
            on_progress,
        )
    return removed


async def _rotate_locked(
    *,
    directory: GraphDirectory,
    probe: TokenProbe,
    exchange: ExchangeAdmin | None,
    cloud: Cloud,
    clock: Clock,
    deadline: Deadline,
    app_id: str,
    before_expiry_days: float,
    max_age_days: float | None,
    force: bool,
    keep: int,
    include_foreign: bool,
    sinks: Sequence[SecretSink],
    lifetime_days: int,
    mailbox: str | None,
    verify: bool,
    rbac: bool,
    on_progress: ProgressCallback | None,
    transport: httpx.BaseTransport | None,
) -> Rotation:
    # Read again under the lock: a concurrent run may have rotated meanwhile.
    app = await directory.application_by_app_id(app_id)
    if app is None:
        raise ConfigurationError(f"--app-id {app_id}: the application disappeared")
    if not force:
        due, reason = rotation_due(
            _facts(app.secrets),
            app.tags,
            clock.now(),
            before_expiry_days=before_expiry_days,
            max_age_days=max_age_days,
        )
        if not due:
            return Rotation(app_id, False, f"{reason} (another run rotated it just now)")
    reason = "forced" if force else reason
    tags = list(app.tags)
    if not delivered_ids(tags):
        # First rotation: every secret of ours may be in use and working; mark them so, before a
        # new secret exists, so that a run killed later leaves an unmarked (untrusted) orphan.
        mine = [s.key_id for s in in_use(_facts(app.secrets), tags)]
        tags = marker_tags(tags, delivered=mine, verified=mine)
        await _set_tags(directory, app.id, tags, deadline, on_progress)

    now = clock.now()
    name = f"{SECRET_NAME_PREFIX} {now:%Y-%m-%d}"
    end = now + timedelta(days=lifetime_days)

    async def add() -> Ready[tuple[SecretInfo, Secret]] | Pending:
        try:
            return Ready(await directory.add_password(app.id, name, end))
        except NotFoundError:
            return Pending("the application has not replicated yet")

    info, value = await poll(
        "the new client secret", add, deadline=deadline, on_progress=on_progress
    )
    facts = {
        "application_id": app.app_id,
        "tenant_id": exchange.tenant_id if exchange else "",
        "expires_at": info.end.isoformat() if info.end else "",
        "key_id": info.key_id,
    }
    delivered: list[str] = []
    for sink in sinks:
        try:
            await asyncio.to_thread(sink.deliver, value, facts)
        except Exception as exc:  # noqa: BLE001 - any failure to deliver means: take the new secret back
            await remove_undelivered_secret(directory, app.id, info.key_id)
            detail = (
                (exc.strerror or str(exc)) if isinstance(exc, OSError) else exc.__class__.__name__
            )
            raise ConfigurationError(
                f"could not deliver the new secret to {sink.description} ({detail}); it was removed again and "
                f"the old secrets are untouched{' (it had reached: ' + ', '.join(delivered) + ')' if delivered else ''}. "
                "Fix the destination and run again."
            ) from None
        delivered.append(sink.description)
    if not sinks:
        delivered.append("stdout")
    # Mark the new secret delivered before anything else can fail (see _rotation's docstring).
    tags = marker_tags(tags, delivered=[info.key_id])
    await _set_tags(directory, app.id, tags, deadline, on_progress)

    verification: Verification | None = None
    if verify:
        target = mailbox or mailbox_from_tags(app.tags)
        if target is None:
            got = await poll(
                "the new secret to be accepted",
                lambda: _accepted(probe, app.app_id, value, cloud.exchange_scope),
                deadline=deadline,
                on_progress=on_progress,
            )
            verified = bool(got)
        else:
            verification = await verify_until_ok(
                deadline=deadline,
                on_progress=on_progress,
                probe=probe,
                cloud=cloud,
                tenant_id=exchange.tenant_id if exchange else probe.tenant,
                app_id=app.app_id,
                secret=value,
                mailbox=target,
                admin=exchange,
                rbac=rbac,
                transport=transport,
            )
            verified = verification.ok
        if not verified:
            return Rotation(
                app_id,
                True,
                reason,
                info.key_id,
                info.end,
                tuple(delivered),
                (),
                False,
                verification,
                value if not sinks else None,
            )
    tags = marker_tags(tags, verified=[info.key_id])
    await _set_tags(directory, app.id, tags, deadline, on_progress)
    secrets = _facts((*app.secrets, info))
    gone = removable(
        secrets, tags, new_key_id=info.key_id, keep=keep, include_foreign=include_foreign
    )
    removed = await _remove(directory, app, gone, deadline, on_progress, tags)
    kept = tuple(s.key_id for s in secrets if s.key_id not in removed)
    return Rotation(
        app_id,
        True,
        reason,
        info.key_id,
        info.end,
        tuple(delivered),
        tuple(removed),
        True if verify else None,
        verification,
        value if not sinks else None,
        kept,
    )


async def _accepted(
    probe: TokenProbe, app_id: str, secret: Secret, scope: str
) -> Ready[bool] | Pending:
    got = await probe.roles(app_id, secret, scope)
    return got if isinstance(got, Pending) else Ready(True)


async def _set_tags(
    directory: GraphDirectory,
    object_id: str,
    tags: list[str],
    deadline: Deadline,
    on_progress: ProgressCallback | None,
) -> None:
    async def patch() -> Ready[None] | Pending:
        try:
            await directory.update_application(object_id, tags=tags)
        except NotFoundError:
            return Pending("the application has not replicated yet")
        return Ready(None)

    await poll("the application's tags", patch, deadline=deadline, on_progress=on_progress)
