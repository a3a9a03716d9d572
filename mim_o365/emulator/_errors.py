"""Errors raised by the emulator's backends; the HTTP layer renders them in each service's format."""

from __future__ import annotations

from typing import Any


class EmulatorError(Exception):
    """A service error: HTTP status, service error code and message (never leaks to library users)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def not_found(ident: str) -> EmulatorError:
    """Graph's 404 for a missing or not-yet-replicated directory object."""
    return EmulatorError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{ident}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def bad_request(message: str, code: str = "Request_BadRequest") -> EmulatorError:
    """Graph's 400."""
    return EmulatorError(400, code, message)


def denied() -> EmulatorError:
    """Graph's 403 for a caller without the permission the operation needs."""
    return EmulatorError(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )
