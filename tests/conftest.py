"""Shared fixtures.

Every Graph response any emulator produces during a test is checked against Microsoft's OpenAPI
description of Graph v1.0 (tests/conformance); a violation fails the test that caused it. Every EWS
request sent to an emulator and every SOAP answer it gives are checked against Microsoft's EWS
schema set (tests/conformance/ews) the same way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from mim_o365 import FakeClock
from mim_o365.emulator import Emulator, EmulatorServer
from tests.conformance.ews_schema import EwsConformanceLog, EwsSchema
from tests.conformance.graph_openapi import ConformanceError, GraphSpec


@dataclass
class ConformanceLog:
    """What the conformance check saw in one test."""

    checked: int = 0
    skipped: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="session")
def graph_spec() -> GraphSpec:
    return GraphSpec.load()


@pytest.fixture(autouse=True)
def graph_conformance(
    graph_spec: GraphSpec, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ConformanceLog]:
    log = ConformanceLog()
    original = Emulator.handle

    def checked_handle(self: Emulator, request: httpx.Request) -> httpx.Response:
        response = original(self, request)
        if self.service_of(request.url.path) != "graph":
            return response
        body = json.loads(response.content) if response.content else None
        try:
            validated = graph_spec.validate_response(
                request.method, request.url.path, response.status_code, body
            )
        except ConformanceError as exc:
            with log.lock:
                log.violations.append(str(exc))
            return response
        with log.lock:
            if validated:
                log.checked += 1
            else:
                log.skipped.append(f"{request.method} {request.url.path}")
        return response

    monkeypatch.setattr(Emulator, "handle", checked_handle)
    yield log
    if log.violations:
        pytest.fail(
            "Graph responses that do not conform to Microsoft's description:\n"
            + "\n".join(log.violations)
        )


@pytest.fixture(scope="session")
def ews_schema() -> EwsSchema:
    return EwsSchema.load()


@pytest.fixture(autouse=True)
def ews_conformance(
    ews_schema: EwsSchema,
    graph_conformance: ConformanceLog,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[EwsConformanceLog]:
    """Every EWS request a client sent and every SOAP answer the emulator gave, checked against
    Microsoft's EWS schema set (tests/conformance/ews). Depends on ``graph_conformance`` so that
    it wraps the ``Emulator.handle`` that fixture installed."""
    log = EwsConformanceLog()
    inner = Emulator.handle

    def checked_handle(self: Emulator, request: httpx.Request) -> httpx.Response:
        response = inner(self, request)
        if self.service_of(request.url.path) != "ews":
            return response
        if log.check_requests and request.method == "POST":
            log.check(ews_schema, request.content, "request")
        if response.headers.get("content-type", "").startswith("text/xml"):
            log.check(ews_schema, response.content, "response")
        elif response.content and response.status_code not in (429, 503):
            # 429/503 come from the emulator's fault plan, not from EWS itself.
            with log.lock:
                log.violations.append(
                    f"EWS answer {response.status_code} has a body that is not text/xml"
                )
        return response

    monkeypatch.setattr(Emulator, "handle", checked_handle)
    yield log
    if log.violations:
        pytest.fail(
            "EWS messages that do not conform to Microsoft's schema:\n" + "\n".join(log.violations)
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> Emulator:
    return Emulator(seed=1234, clock=clock)


@pytest.fixture
def server(emulator: Emulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emulator) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures logging; put it back so one test's handlers never reach the next."""
    import logging

    root, ours = logging.getLogger(), logging.getLogger("mim_o365")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    ours.handlers[:], ours.level, ours.propagate = saved[2], saved[3], saved[4]
