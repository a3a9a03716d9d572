"""Exchange Online admin API: ``POST /adminapi/beta/{tenant}/InvokeCommand``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from mim_o365.emulator._http._common import json_response

if TYPE_CHECKING:
    from mim_o365.emulator._emulator import Emulator


class ExchangeAdmin:
    """The admin API surface of an :class:`Emulator`."""

    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator

    def handle(self, request: httpx.Request, path: str) -> httpx.Response:
        """Serve ``path`` (starting with ``/adminapi/``)."""
        return json_response(404, {"error": {"code": "NotFound", "message": "not implemented yet"}})
