"""Pieces shared by the emulator's HTTP surfaces."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

JSON = dict[str, Any]
Handler = Callable[..., httpx.Response]


class ConnectionDropped(Exception):  # noqa: N818 - an event, not an error of the emulator
    """The emulator decided to close the connection without an answer."""


@dataclass(frozen=True)
class Route:
    """A method and a path pattern with named groups, bound to a handler."""

    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: str


def route(methods: str, pattern: str, handler: str) -> Route:
    """Build a :class:`Route` from ``"GET POST"``, a regex (anchored here) and a handler name."""
    return Route(frozenset(methods.split()), re.compile(f"^{pattern}$"), handler)


def match(routes: list[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | str | None:
    """The route for ``method path``; ``"method"`` when only the method is wrong; None if no path matches."""
    wrong_method = False
    for r in routes:
        m = r.pattern.match(path)
        if m is None:
            continue
        if method not in r.methods:
            wrong_method = True
            continue
        return r, {k: v for k, v in m.groupdict().items() if v is not None}
    return "method" if wrong_method else None


def json_response(
    status: int,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json; charset=utf-8",
) -> httpx.Response:
    """A JSON answer (or an empty one when ``body`` is None)."""
    out = dict(headers or {})
    if body is None:
        return httpx.Response(status, headers=out)
    out["Content-Type"] = content_type
    return httpx.Response(status, headers=out, content=json.dumps(body).encode())


def read_json(request: httpx.Request) -> tuple[Any, str | None]:
    """The request's JSON body, or an explanation of why it is not JSON."""
    raw = request.content
    if not raw.strip():
        return None, "Request body is empty."
    try:
        return json.loads(raw), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"Invalid JSON in request body: {exc.__class__.__name__}."


def iso(dt: datetime) -> str:
    """UTC time as Graph writes it: ``2026-08-01T10:00:00Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def base_url(request: httpx.Request) -> str:
    """``scheme://host:port`` the client used, so links we hand out lead back to us."""
    return f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
