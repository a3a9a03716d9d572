"""The exception hierarchy of mim-o365.

Every error says what to do next. Nothing above the gateways sees a third-party exception type:
the gateways translate them with ``raise ... from``. No message ever contains a secret.

::

    MimO365Error
    ├── ConfigurationError (also ValueError)   bad input or settings, raised before any write
    ├── AuthenticationError                    no token; .error_code (AADSTS...), .correlation_id
    ├── PermissionDeniedError                  403 / missing role or consent; .missing
    ├── ServiceError                           the service answered with an error
    │   ├── NotFoundError
    │   ├── ConflictError
    │   └── ThrottledError                     .retry_after; only after retrying gave up
    ├── TransportError                         no response (DNS, TLS, connection, timeout)
    ├── PropagationTimeoutError                a change is made but not yet effective; .pending
    └── PlanConflictError                      existing objects contradict the desired state
    UsageError (also RuntimeError)             API misuse
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "MimO365Error",
    "NotFoundError",
    "PermissionDeniedError",
    "PlanConflictError",
    "PropagationTimeoutError",
    "ServiceError",
    "ThrottledError",
    "TransportError",
    "UsageError",
]


class MimO365Error(Exception):
    """Base of every error raised by mim-o365."""


class ConfigurationError(MimO365Error, ValueError):
    """Bad input or settings; raised before anything is written."""


class UsageError(MimO365Error, RuntimeError):
    """The API was used in a way it does not support."""


class AuthenticationError(MimO365Error):
    """A token could not be obtained."""

    def __init__(
        self, message: str, *, error_code: str | None = None, correlation_id: str | None = None
    ) -> None:
        super().__init__(message)
        self._error_code = error_code
        self._correlation_id = correlation_id

    @property
    def error_code(self) -> str | None:
        """The identity platform's code, e.g. ``AADSTS7000215``."""
        return self._error_code

    @property
    def correlation_id(self) -> str | None:
        """The identity platform's correlation id, for a support case."""
        return self._correlation_id


class PermissionDeniedError(MimO365Error):
    """The caller lacks a role, a permission or consent."""

    def __init__(self, message: str, *, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self._missing = missing

    @property
    def missing(self) -> tuple[str, ...]:
        """What to grant, e.g. ``("AppRoleAssignment.ReadWrite.All",)``."""
        return self._missing


class ServiceError(MimO365Error):
    """A service answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        service: str,
        status_code: int | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self._service = service
        self._status_code = status_code
        self._error_code = error_code
        self._request_id = request_id

    @property
    def service(self) -> str:
        """``entra``, ``graph`` or ``exchange``."""
        return self._service

    @property
    def status_code(self) -> int | None:
        """HTTP status of the failing response."""
        return self._status_code

    @property
    def error_code(self) -> str | None:
        """The service's error code, e.g. ``Request_ResourceNotFound``."""
        return self._error_code

    @property
    def request_id(self) -> str | None:
        """The service's request id, for a support case."""
        return self._request_id


class NotFoundError(ServiceError):
    """The object does not exist (or has not replicated yet)."""


class ConflictError(ServiceError):
    """The object already exists or a precondition failed."""


class ThrottledError(ServiceError):
    """The service kept throttling after the retry budget was spent."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self._retry_after = retry_after

    @property
    def retry_after(self) -> float | None:
        """Seconds the service asked to wait."""
        return self._retry_after


class TransportError(MimO365Error):
    """No response: DNS, TLS, connection or timeout."""


class PropagationTimeoutError(MimO365Error):
    """A change was made but did not take effect within the timeout; run again to finish."""

    def __init__(self, message: str, *, pending: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self._pending = pending

    @property
    def pending(self) -> tuple[str, ...]:
        """The conditions still awaited."""
        return self._pending


class PlanConflictError(MimO365Error):
    """Existing objects contradict the desired state (for example an app of the same name we do not own)."""
