"""Exchange Web Services (SOAP) at ``/EWS/Exchange.asmx``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from mim_o365.emulator._emulator import Emulator


class Ews:
    """The EWS surface of an :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator

    def handle(self, request: httpx.Request, path: str) -> httpx.Response:
        """Serve ``path`` (``/EWS/Exchange.asmx``)."""
        return httpx.Response(404)
