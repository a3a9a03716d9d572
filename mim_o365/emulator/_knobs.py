"""Knobs: eventual consistency and faults, deterministic under a seed and driven by a clock."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mim_o365.emulator._models import Replica


@dataclass(frozen=True, slots=True)
class Lag:
    """How long a new object stays invisible: to its first ``reads`` reads and for ``seconds``.

    ``Lag()`` is immediate. Tests use ``Lag(reads=n)`` so that eventual consistency costs no time;
    the server uses ``Lag(seconds=s)`` on the real clock.
    """

    reads: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.reads < 0 or self.seconds < 0:
            raise ValueError("a lag cannot be negative")

    def replica(self, now: datetime) -> Replica:
        """The replication state of an object created at ``now``."""
        return Replica(
            reads_left=self.reads,
            visible_at=now + timedelta(seconds=self.seconds) if self.seconds else None,
        )


def seen(replica: Replica, now: datetime) -> bool:
    """One read of an object: True when visible. A read that misses uses up one of ``reads_left``."""
    if replica.visible_at is not None and now < replica.visible_at:
        return False
    if replica.reads_left > 0:
        replica.reads_left -= 1
        return False
    return True


@dataclass
class Knobs:
    """Behaviour switches of an emulated tenant.

    Attributes:
        replication: new applications and service principals (404 Request_ResourceNotFound,
            400 NoBackingApplicationObject, AADSTS700016).
        secret: new client secrets at the token endpoint (AADSTS7000215).
        consent: new app role assignments in tokens (tokens without ``roles``).
        policy: Exchange access policies and the EWS allow list.
        throttle_rate / error_rate / drop_rate: share of requests answered 429 / 503 / by dropping
            the connection, drawn from the seeded generator.
        retry_after: seconds in ``Retry-After`` of 429 and 503 answers.
        secret_max_lifetime_days: an app-management policy capping client secret lifetime.
        device_code_pending_polls: polls answered ``authorization_pending`` before the interactive
            admin is signed in.
        token_lifetime: seconds an access token is valid.
        ews_enabled: the seeded tenant's EwsEnabled (True, False, or None for "not configured").
        ews_denial: how EWS answers an app blocked by EwsEnabled/EwsAllowedAppIDs or by an access
            policy; the wire form is not documented: ``"http403"`` (empty 403, the default) or
            ``"soap"`` (HTTP 200 with a per-item ErrorAccessDenied).
        ews_allowed_ids_as_array: Get-OrganizationConfig returns EwsAllowedAppIDs as a JSON array
            instead of a comma-separated string (the REST type is not documented).
        require_retrieve_switch: Get-OrganizationConfig omits EwsAllowedAppIDs unless called with
            -RetrieveEwsOperationAccessPolicy (documented for PowerShell).
    """

    replication: Lag = field(default_factory=Lag)
    secret: Lag = field(default_factory=Lag)
    consent: Lag = field(default_factory=Lag)
    policy: Lag = field(default_factory=Lag)
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    retry_after: int = 1
    secret_max_lifetime_days: float | None = None
    device_code_pending_polls: int = 0
    token_lifetime: int = 3599
    ews_enabled: bool | None = True
    ews_denial: str = "http403"
    ews_allowed_ids_as_array: bool = False
    require_retrieve_switch: bool = True

    def __post_init__(self) -> None:
        if self.ews_denial not in ("http403", "soap"):
            raise ValueError(f"ews_denial must be 'http403' or 'soap', got {self.ews_denial!r}")
        for name in ("throttle_rate", "error_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")


FAULT_KINDS = ("throttle", "unavailable", "drop")


@dataclass
class _Pending:
    kind: str
    count: int
    service: str | None
    path: str | None
    retry_after: int | None


class Faults:
    """Faults to inject: queued ones (exact, for tests) and random ones (rates, seeded)."""

    def __init__(self, knobs: Knobs, rng: random.Random) -> None:
        self._knobs = knobs
        self._rng = rng
        self._queue: list[_Pending] = []
        self._lock = threading.Lock()

    def inject(
        self,
        kind: str,
        count: int = 1,
        *,
        service: str | None = None,
        path: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with fault ``kind``.

        Args:
            kind: ``throttle`` (429 + Retry-After), ``unavailable`` (503) or ``drop`` (connection
                closed without an answer).
            count: how many requests to hit.
            service: only requests to ``identity``, ``graph``, ``exchange`` or ``keyvault``.
            path: only requests whose path contains this text.
            retry_after: seconds for ``Retry-After``; defaults to the knob.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; choose one of {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._queue.append(_Pending(kind, count, service, path, retry_after))

    def clear(self) -> None:
        """Forget queued faults."""
        with self._lock:
            self._queue.clear()

    def draw(self, service: str, path: str) -> tuple[str, int] | None:
        """The fault for this request, if any, and its Retry-After."""
        with self._lock:
            for pending in self._queue:
                if pending.service not in (None, service):
                    continue
                if pending.path is not None and pending.path not in path:
                    continue
                pending.count -= 1
                if pending.count <= 0:
                    self._queue.remove(pending)
                return pending.kind, pending.retry_after or self._knobs.retry_after
            knobs = self._knobs
            if not (knobs.throttle_rate or knobs.error_rate or knobs.drop_rate):
                return None
            roll = self._rng.random()
        if roll < knobs.throttle_rate:
            return "throttle", knobs.retry_after
        if roll < knobs.throttle_rate + knobs.error_rate:
            return "unavailable", knobs.retry_after
        if roll < knobs.throttle_rate + knobs.error_rate + knobs.drop_rate:
            return "drop", 0
        return None
