"""mim-o365: the Entra ID application Microsoft Identity Manager needs to send mail through Exchange Online.

Registers it, restricts it to the MIM mailbox, keeps it on Exchange Online's EWS allow list, verifies it
through EWS, and keeps its client secret alive.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from mim_o365._client import Client
from mim_o365._clock import Clock, FakeClock, SystemClock
from mim_o365._clouds import BUILTIN_CLOUDS, Cloud
from mim_o365._errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    MimO365Error,
    NotFoundError,
    PermissionDeniedError,
    PlanConflictError,
    PropagationTimeoutError,
    ServiceError,
    ThrottledError,
    TransportError,
    UsageError,
)
from mim_o365._register import Registration
from mim_o365._rotate import Rotation
from mim_o365._secrets import Secret
from mim_o365._sinks import FileSink, SecretSink
from mim_o365._status import RegistrationSummary, SecretState, Status
from mim_o365._unregister import Unregistration
from mim_o365._verify import Check, Verification

try:
    __version__ = version("mim-o365")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "BUILTIN_CLOUDS",
    "AuthenticationError",
    "Check",
    "Client",
    "Clock",
    "Cloud",
    "ConfigurationError",
    "ConflictError",
    "FakeClock",
    "FileSink",
    "MimO365Error",
    "NotFoundError",
    "PermissionDeniedError",
    "PlanConflictError",
    "PropagationTimeoutError",
    "Registration",
    "RegistrationSummary",
    "Rotation",
    "Secret",
    "SecretSink",
    "SecretState",
    "ServiceError",
    "Status",
    "SystemClock",
    "ThrottledError",
    "TransportError",
    "Unregistration",
    "UsageError",
    "Verification",
    "__version__",
]
